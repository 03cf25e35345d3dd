import { type FormEvent, useId, useState } from "react";

import { errorMessage, isApiError } from "../../../lib/api";

interface LoginFormProps {
  onLogin: (username: string, password: string) => Promise<void>;
  /** Why the inspector sees the form (session ended, logged out). */
  notice?: string | null;
}

function loginError(err: unknown): string {
  if (isApiError(err, 429)) {
    const wait = err.retryAfter !== null ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
    return `Too many login attempts.${wait}`;
  }
  if (isApiError(err, 401)) return err.detail || "Wrong user name or password.";
  return errorMessage(err);
}

/** Inspector login: user name and password, with the server's reason on failure. */
export function LoginForm({ onLogin, notice = null }: LoginFormProps) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const errorId = useId();

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (pending) return;
    if (username.trim() === "" || password === "") {
      setError("Enter your user name and password.");
      return;
    }
    setPending(true);
    setError(null);
    try {
      await onLogin(username.trim(), password);
    } catch (err) {
      setError(loginError(err));
      setPassword("");
    } finally {
      setPending(false);
    }
  }

  return (
    <main className="login">
      <form className="login-card" onSubmit={submit} aria-describedby={error ? errorId : undefined} noValidate>
        <h1 className="login-title">
          <span className="brand-mark" aria-hidden="true" /> partcheck review
        </h1>
        <p className="muted">Sign in to review images the model could not decide.</p>
        {notice && !error && (
          <p className="notice notice-info" role="status">
            {notice}
          </p>
        )}
        <label className="field">
          <span>User name</span>
          <input
            name="username"
            autoComplete="username"
            autoFocus
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            aria-invalid={error ? true : undefined}
          />
        </label>
        <label className="field">
          <span>Password</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            aria-invalid={error ? true : undefined}
          />
        </label>
        <div aria-live="assertive">
          {error && (
            <p id={errorId} className="notice notice-error" role="alert">
              {error}
            </p>
          )}
        </div>
        <button type="submit" className="btn btn-primary btn-block" disabled={pending}>
          {pending ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
