import { Notice } from "../../../components/Notice";
import { config } from "../../../config";
import { count, duration, percent, when } from "../../../lib/format";
import { useStats } from "../hooks/useStats";
import { ThroughputChart } from "./ThroughputChart";

const CATEGORIES = [
  { key: "okay", label: "OK" },
  { key: "defect", label: "Defect" },
  { key: "unclear", label: "Unclear" },
  { key: "human_decided", label: "Decided by inspectors" },
  { key: "rejected", label: "Rejected (unreadable)" },
] as const;

/** An ISO time as local "HH:MM"; the text itself when it is no time. */
function clock(iso: string): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

/** Counts per category, rates, throughput and the oldest waiting image. */
export function Dashboard() {
  const { stats, error, updatedAt, refresh } = useStats(config().statsRefreshMs);

  return (
    <main className="page dashboard" aria-labelledby="dashboard-title">
      <header className="page-header">
        <h1 id="dashboard-title">Dashboard</h1>
        <div className="page-actions">
          <span className="muted" aria-live="polite">
            {updatedAt ? `Updated ${when(updatedAt.toISOString())}` : "Loading…"}
          </span>
          <button type="button" className="btn" onClick={() => void refresh()}>
            Refresh
          </button>
        </div>
      </header>
      {error && <Notice kind="error">Could not load the figures: {error}</Notice>}
      {stats && (
        <>
          <section className="cards" aria-label="Images per category">
            {CATEGORIES.map((c) => (
              <div key={c.key} className={`card card-${c.key}`}>
                <p className="card-label">{c.label}</p>
                <p className="card-value" data-testid={`count-${c.key}`}>
                  {count(stats.counts[c.key])}
                </p>
              </div>
            ))}
          </section>
          <p
            className="muted"
            data-testid="totals-as-of"
            title="The unclear count is current; the other counts are re-counted every few minutes."
          >
            Totals as of {clock(stats.totals_computed_at)}
          </p>
          <section className="cards" aria-label="Rates and waiting time">
            <div className="card">
              <p className="card-label">Defect rate</p>
              <p className="card-value" data-testid="defect-rate">
                {percent(stats.defect_rate)}
              </p>
            </div>
            <div className="card">
              <p className="card-label">Unclear rate</p>
              <p className="card-value" data-testid="unclear-rate">
                {percent(stats.unclear_rate)}
              </p>
            </div>
            <div className="card">
              <p className="card-label">Oldest unclear image waiting</p>
              <p className="card-value" data-testid="oldest-age">
                {stats.oldest_unclear_age_s === null ? "none waiting" : duration(stats.oldest_unclear_age_s)}
              </p>
            </div>
          </section>
          <section className="panel-card" aria-labelledby="throughput-title">
            <h2 id="throughput-title" className="section-title">
              Throughput
            </h2>
            <ThroughputChart data={stats.throughput_per_hour} />
          </section>
        </>
      )}
    </main>
  );
}
