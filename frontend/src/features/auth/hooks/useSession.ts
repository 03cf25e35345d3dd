/** Session state for the whole page: restored from the cookie at start, dropped on any 401. */
import { useCallback, useEffect, useState } from "react";

import { api, errorMessage, isApiError } from "../../../lib/api";
import type { Session } from "../../../lib/types";
import { currentSession, login as apiLogin, logout as apiLogout } from "../api/auth";

export type SessionState =
  | { status: "loading" }
  | { status: "anonymous"; notice: string | null }
  | { status: "authenticated"; session: Session };

export interface SessionControls {
  state: SessionState;
  login: (username: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
  /** Why the last logout failed; the session is still valid then. Null otherwise. */
  logoutError: string | null;
  /** A logout request is on its way. */
  loggingOut: boolean;
  dismissLogoutError: () => void;
}

const LOGGED_OUT: SessionState = { status: "anonymous", notice: "You are logged out." };

/** Restore, create and end the inspector's session. */
export function useSession(): SessionControls {
  const [state, setState] = useState<SessionState>({ status: "loading" });
  const [logoutError, setLogoutError] = useState<string | null>(null);
  const [loggingOut, setLoggingOut] = useState(false);

  useEffect(() => {
    let active = true;
    currentSession()
      .then((session) => {
        if (!active) return;
        setState(session ? { status: "authenticated", session } : { status: "anonymous", notice: null });
      })
      .catch((err: unknown) => {
        if (active) setState({ status: "anonymous", notice: errorMessage(err) });
      });
    const unsubscribe = api.onUnauthorized(() => {
      api.setCsrfToken(null);
      setLogoutError(null);
      setState({ status: "anonymous", notice: "Your session has ended. Please log in again." });
    });
    return () => {
      active = false;
      unsubscribe();
    };
  }, []);

  const login = useCallback(async (username: string, password: string) => {
    const session = await apiLogin(username, password);
    setLogoutError(null);
    setState({ status: "authenticated", session });
  }, []);

  const logout = useCallback(async () => {
    setLoggingOut(true);
    setLogoutError(null);
    try {
      await apiLogout();
      setState(LOGGED_OUT);
    } catch (err) {
      // 401: the session was already gone. Anything else (unreachable, 5xx): the server still holds
      // it, so saying "logged out" would leave a valid session behind on a shared workstation.
      if (isApiError(err, 401)) setState(LOGGED_OUT);
      else setLogoutError(errorMessage(err));
    } finally {
      setLoggingOut(false);
    }
  }, []);

  const dismissLogoutError = useCallback(() => setLogoutError(null), []);

  return { state, login, logout, logoutError, loggingOut, dismissLogoutError };
}
