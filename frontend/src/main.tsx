/**
 * The page's entry, kept free of React so it is small and runs at once: it sends the start-up
 * requests (see startup.ts), then loads the React bundle, which is evaluated while they travel.
 */
import { config } from "./config";
import { startEarlyRequests } from "./startup";

try {
  config();
  void startEarlyRequests();
} catch {
  // A bad configuration is shown by bootstrap.tsx; the screens then ask for what they need themselves.
}

void import("./bootstrap");
