/**
 * The page's paths, free of React so the start-up entry (`src/main.tsx`) can read the route
 * before the React bundle has loaded.
 */

export type Route = "review" | "history" | "dashboard";

export const PATHS: Record<Route, string> = { review: "/", history: "/history", dashboard: "/dashboard" };

/** The route for a location path; unknown paths show the review screen. */
export function routeFor(pathname: string): Route {
  const clean = pathname.replace(/\/+$/, "") || "/";
  const found = (Object.keys(PATHS) as Route[]).find((r) => PATHS[r] === clean);
  return found ?? "review";
}

/** Path of a route, for links. */
export function pathFor(route: Route): string {
  return PATHS[route];
}
