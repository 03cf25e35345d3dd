/**
 * Page start-up: the requests every first screen needs go out together as soon as the small start-up
 * entry runs (`src/main.tsx`, before the React bundle is even loaded), instead of one after the
 * other as each screen mounts (/api/me, then /api/config and /api/queue, then the image). The screens'
 * own calls take these answers (see `ApiClient.prefetch`). Nothing here may import React.
 */
import { config } from "./config";
import { prefetchSession } from "./features/auth/api/auth";
import { imageUrl, prefetchQueue, prefetchServerConfig } from "./features/queue/api/queue";
import { routeFor } from "./lib/routes";

// Held so the browser keeps loading (and caching) the first image until the <img> asks for it.
const preloaded: HTMLImageElement[] = [];

/** URLs of the images fetched ahead at start-up (for tests). */
export function preloadedImages(): string[] {
  return preloaded.map((img) => img.src);
}

/** Send the start-up requests side by side; the first image loads as soon as the queue answers. */
export function startEarlyRequests(pathname: string = window.location.pathname): Promise<void> {
  void prefetchSession();
  if (routeFor(pathname) !== "review") return Promise.resolve();
  void prefetchServerConfig();
  // Not logged in: the queue answers 401, nothing is preloaded and the screen asks again after login.
  return prefetchQueue(config().queuePageSize).then((page) => {
    const first = page?.items[0];
    if (!first) return;
    const img = new Image();
    img.decoding = "async";
    img.src = imageUrl(first.id);
    preloaded.push(img);
  });
}
