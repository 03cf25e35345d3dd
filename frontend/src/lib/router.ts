/** A tiny path router: the page has three screens and needs no routing library. */
import { useCallback, useEffect, useState } from "react";

import { PATHS, type Route, routeFor } from "./routes";

export { type Route, pathFor, routeFor } from "./routes";

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
