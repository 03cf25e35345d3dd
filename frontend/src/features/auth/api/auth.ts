/** Session calls: login, logout, who am I. */
import { api, isApiError } from "../../../lib/api";
import type { Session } from "../../../lib/types";

/** Log in; remembers the CSRF token for later state-changing calls. */
export async function login(username: string, password: string): Promise<Session> {
  const session = await api.post<Session>("/api/login", {
    body: { username, password },
    expectUnauthorized: true,
  });
  api.setCsrfToken(session.csrf_token);
  return session;
}

/**
 * End the session on the server and forget the CSRF token. Rejects when the server did not end it:
 * with a 401 the session was already gone (token forgotten too); on any other failure it is still
 * valid, and so is its token.
 */
export async function logout(): Promise<void> {
  try {
    await api.post<void>("/api/logout", { expectUnauthorized: true });
  } catch (err) {
    if (isApiError(err, 401)) api.setCsrfToken(null);
    throw err;
  }
  api.setCsrfToken(null);
}

/** The current session, or null when the browser holds none. */
export async function currentSession(): Promise<Session | null> {
  try {
    const session = await api.get<Session>("/api/me", { expectUnauthorized: true });
    api.setCsrfToken(session.csrf_token);
    return session;
  } catch (err) {
    if (isApiError(err, 401)) return null;
    throw err;
  }
}

/** Ask who is logged in at page start; `currentSession()` then takes this answer. */
export function prefetchSession(): Promise<Session | null> {
  return api.prefetch<Session>("/api/me");
}
