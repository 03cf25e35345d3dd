/** A tiny path router: the page has three screens and needs no routing library. */
import { useCallback, useEffect, useState } from "react";

export type Route = "review" | "history" | "dashboard";

const PATHS: Record<Route, string> = { review: "/", history: "/history", dashboard: "/dashboard" };

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

/** Current route plus a navigate function that keeps browser back/forward working. */
export function useRoute(): [Route, (route: Route) => void] {
  const [route, setRoute] = useState<Route>(() => routeFor(window.location.pathname));

  useEffect(() => {
    const onPop = () => setRoute(routeFor(window.location.pathname));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const navigate = useCallback((next: Route) => {
    if (routeFor(window.location.pathname) !== next) window.history.pushState(null, "", PATHS[next]);
    setRoute(next);
  }, []);

  return [route, navigate];
}
