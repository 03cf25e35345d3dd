import { type FormEvent, useState } from "react";

import { Notice } from "../../../components/Notice";
import { percent, when } from "../../../lib/format";
import type { HistoryEntry, Label } from "../../../lib/types";
import { historyImageUrl } from "../api/history";
import { useHistory } from "../hooks/useHistory";

/** Local midnight of a yyyy-mm-dd date input, as an ISO instant for the API. */
export function sinceFromDate(date: string): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return undefined;
  const [y, m, d] = date.split("-").map(Number) as [number, number, number];
  const local = new Date(y, m - 1, d, 0, 0, 0, 0);
  return Number.isNaN(local.getTime()) ? undefined : local.toISOString();
}

function fileName(key: string): string {
  return key.split("/").pop() ?? key;
}

function Row({ entry }: { entry: HistoryEntry }) {
  const undone = entry.action === "undo";
  return (
    <tr className={undone ? "row-undo" : undefined}>
      <td>
        <img
          className="thumb"
          src={historyImageUrl(entry.id)}
          alt=""
          loading="lazy"
          width={48}
          height={48}
          onError={(e) => {
            e.currentTarget.style.visibility = "hidden";
          }}
        />
      </td>
      <td>
        <time dateTime={entry.at ?? entry.decided_at}>{when(entry.at ?? entry.decided_at)}</time>
      </td>
      <td title={entry.key}>{fileName(entry.key)}</td>
      <td>
        {undone ? (
          <span className="chip chip-undo">Undone</span>
        ) : (
          <span className={`chip chip-${entry.label}`}>{entry.label === "ok" ? "OK" : "Defect"}</span>
        )}
      </td>
      <td>{entry.inspector}</td>
      <td>
        {entry.model_label ?? "–"} {entry.confidence !== null && <span className="muted">({percent(entry.confidence)})</span>}
      </td>
      <td className="note-cell">{entry.note || <span className="muted">–</span>}</td>
    </tr>
  );
}

/** Recent decisions with filters by inspector, label and date. */
export function HistoryView() {
  const history = useHistory();
  const [inspector, setInspector] = useState("");
  const [label, setLabel] = useState<Label | "">("");
  const [date, setDate] = useState("");

  function submit(event: FormEvent) {
    event.preventDefault();
    history.apply({ inspector, label, since: sinceFromDate(date) });
  }

  function clear() {
    setInspector("");
    setLabel("");
    setDate("");
    history.apply({});
  }

  return (
    <main className="page history" aria-labelledby="history-title">
      <header className="page-header">
        <h1 id="history-title">History</h1>
      </header>
      <form className="filters" onSubmit={submit} aria-label="Filter decisions">
        <label className="field">
          <span>Inspector</span>
          <input value={inspector} onChange={(e) => setInspector(e.target.value)} placeholder="any" />
        </label>
        <label className="field">
          <span>Label</span>
          <select value={label} onChange={(e) => setLabel(e.target.value as Label | "")}>
            <option value="">any</option>
            <option value="ok">OK</option>
            <option value="defect">Defect</option>
          </select>
        </label>
        <label className="field">
          <span>Since</span>
          <input type="date" value={date} onChange={(e) => setDate(e.target.value)} />
        </label>
        <div className="filters-actions">
          <button type="submit" className="btn btn-primary">
            Apply
          </button>
          <button type="button" className="btn" onClick={clear}>
            Clear
          </button>
        </div>
      </form>
      <div aria-live="polite" className="sr-only">
        {history.loading ? "Loading history" : `${history.entries.length} entries`}
      </div>
      {history.error && <Notice kind="error">Could not load the history: {history.error}</Notice>}
      <div className="table-wrap">
        <table className="table">
          <thead>
            <tr>
              <th scope="col">
                <span className="sr-only">Image</span>
              </th>
              <th scope="col">When</th>
              <th scope="col">Image</th>
              <th scope="col">Decision</th>
              <th scope="col">Inspector</th>
              <th scope="col">Model said</th>
              <th scope="col">Note</th>
            </tr>
          </thead>
          <tbody>
            {history.entries.map((entry, i) => (
              <Row key={`${entry.id}-${entry.decided_at}-${entry.action}-${i}`} entry={entry} />
            ))}
          </tbody>
        </table>
        {!history.loading && history.entries.length === 0 && !history.error && (
          <p className="empty muted">No decisions match these filters.</p>
        )}
      </div>
      {!history.loading && history.hasMore && (
        <div className="load-more">
          <button type="button" className="btn" onClick={history.loadMore} disabled={history.loadingMore}>
            {history.loadingMore ? "Loading…" : "Load older"}
          </button>
        </div>
      )}
    </main>
  );
}
