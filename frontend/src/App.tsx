import { Notice } from "./components/Notice";
import { LoginForm } from "./features/auth/components/LoginForm";
import { useSession } from "./features/auth/hooks/useSession";
import { Dashboard } from "./features/dashboard/components/Dashboard";
import { HistoryView } from "./features/history/components/HistoryView";
import { ReviewScreen } from "./features/queue/components/ReviewScreen";
import { type Route, pathFor, useRoute } from "./lib/router";

const TABS: { route: Route; label: string }[] = [
  { route: "review", label: "Review" },
  { route: "history", label: "History" },
  { route: "dashboard", label: "Dashboard" },
];

/** The page shell: login gate, top bar with navigation, and the current screen. */
export function App() {
  const { state, login, logout, logoutError, loggingOut, dismissLogoutError } = useSession();
  const [route, navigate] = useRoute();

  if (state.status === "loading") {
    return (
      <main className="splash" aria-busy="true">
        <p className="muted">Loading…</p>
      </main>
    );
  }
  if (state.status === "anonymous") {
    return <LoginForm onLogin={login} notice={state.notice} />;
  }

  return (
    <div className="shell">
      <a className="skip-link" href="#content">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">
          <span className="brand-mark" aria-hidden="true" /> <span className="brand-text">partcheck review</span>
        </span>
        <nav aria-label="Main">
          <ul className="tabs">
            {TABS.map((tab) => (
              <li key={tab.route}>
                <a
                  href={pathFor(tab.route)}
                  className="tab"
                  aria-current={route === tab.route ? "page" : undefined}
                  onClick={(event) => {
                    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
                    event.preventDefault();
                    navigate(tab.route);
                  }}
                >
                  {tab.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="user">
          <span className="user-name" title="Signed in as">
            {state.session.username}
          </span>
          <button type="button" className="btn btn-quiet" onClick={() => void logout()} disabled={loggingOut}>
            Log out
          </button>
        </div>
      </header>
      {logoutError && (
        <div className="session-alert">
          <Notice
            kind="error"
            onDismiss={dismissLogoutError}
            action={{ label: "Try again", onClick: () => void logout(), disabled: loggingOut }}
          >
            Could not log out: {logoutError.replace(/\.$/, "")}. You are still logged in.
          </Notice>
        </div>
      )}
      <div id="content" className="content">
        {route === "review" && <ReviewScreen />}
        {route === "history" && <HistoryView />}
        {route === "dashboard" && <Dashboard />}
      </div>
    </div>
  );
}
