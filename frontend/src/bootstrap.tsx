/** The React page; loaded by main.tsx once the start-up requests are on their way. */
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { App } from "./App";
import { ConfigError, config } from "./config";
import "./styles.css";

const root = createRoot(document.getElementById("root") as HTMLElement);

try {
  config();
  root.render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
} catch (err) {
  // A broken build configuration is shown, not hidden behind a blank page.
  const message = err instanceof ConfigError ? err.message : String(err);
  root.render(
    <main className="splash">
      <div className="notice notice-error" role="alert">
        The page is misconfigured: {message}
      </div>
    </main>,
  );
}
