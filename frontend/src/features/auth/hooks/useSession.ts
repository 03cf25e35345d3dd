/** Session state for the whole page: restored from the cookie at start, dropped on any 401. */
import { useCallback, useEffect, useState } from "react";

import { api, errorMessage } from "../../../lib/api";
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
}

/** Restore, create and end the inspector's session. */
export function useSession(): SessionControls {
  const [state, setState] = useState<SessionState>({ status: "loading" });

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
      setState({ status: "anonymous", notice: "Your session has ended. Please log in again." });
    });
    return () => {
      active = false;
      unsubscribe();
    };
  }, []);

  const login = useCallback(async (username: string, password: string) => {
    const session = await apiLogin(username, password);
    setState({ status: "authenticated", session });
  }, []);

  const logout = useCallback(async () => {
    try {
      await apiLogout();
    } finally {
      setState({ status: "anonymous", notice: "You are logged out." });
    }
  }, []);

  return { state, login, logout };
}
