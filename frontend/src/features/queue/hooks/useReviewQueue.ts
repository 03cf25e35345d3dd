/**
 * The review screen's state: the loaded part of the queue, the current image, its claim,
 * decisions, undo and the messages an inspector needs when another inspector got there first.
 */
import { useCallback, useEffect, useMemo, useReducer, useRef } from "react";

import { config } from "../../../config";
import { errorMessage, isApiError } from "../../../lib/api";
import type { Decision, Item, Label, ServerConfig } from "../../../lib/types";
import { claimItem, decideItem, fetchItem, fetchQueue, fetchServerConfig, undoLast } from "../api/queue";

export type ClaimState = "pending" | "held" | "failed";

export interface Notice {
  kind: "info" | "warning" | "error";
  text: string;
}

export interface UndoOffer {
  item: Item;
  decision: Decision;
  /** Local clock time (ms) when the server's undo window closes. */
  expiresAt: number;
}

interface QueueState {
  items: Item[];
  index: number;
  cursor: string | null;
  total: number | null;
  loading: boolean;
  loaded: boolean;
  loadError: string | null;
  /** Why the last attempt at the next page failed; cleared once a page arrives. */
  pageError: string | null;
  /** Next-page failures in a row; sets the wait before the next automatic attempt. */
  pageFailures: number;
  claims: Record<string, ClaimState>;
  busy: boolean;
  notice: Notice | null;
  status: string;
  undoOffer: UndoOffer | null;
}

type Action =
  | { type: "loading" }
  | { type: "loaded"; items: Item[]; cursor: string | null; total: number; append: boolean }
  | { type: "loadFailed"; message: string; append: boolean }
  | { type: "total"; total: number }
  | { type: "claim"; id: string; claim: ClaimState }
  | { type: "remove"; id: string; notice: Notice | null; status: string; totalDelta: number }
  | { type: "move"; delta: number }
  | { type: "busy"; busy: boolean }
  | { type: "decided"; item: Item; decision: Decision; expiresAt: number }
  | { type: "undone"; item: Item | null; status: string }
  | { type: "notice"; notice: Notice | null; status?: string }
  | { type: "dropUndo" };

const initialState: QueueState = {
  items: [],
  index: 0,
  cursor: null,
  total: null,
  loading: false,
  loaded: false,
  loadError: null,
  pageError: null,
  pageFailures: 0,
  claims: {},
  busy: false,
  notice: null,
  status: "",
  undoOffer: null,
};

/** First wait before the next page is asked for again after a failure; doubles with each failure in a row. */
export const PAGE_RETRY_FIRST_MS = 2_000;
/** Longest wait between automatic attempts at the next page. */
export const PAGE_RETRY_MAX_MS = 30_000;

/** Wait before the next automatic attempt after `failures` failed next-page loads in a row (2 s, 4 s, ... 30 s). */
export function pageRetryDelayMs(failures: number): number {
  const doublings = Math.min(Math.max(0, failures - 1), 10);
  return Math.min(PAGE_RETRY_MAX_MS, PAGE_RETRY_FIRST_MS * 2 ** doublings);
}

function left(total: number | null): string {
  return total === null ? "" : ` ${Math.max(0, total)} left.`;
}

function withoutItem(state: QueueState, id: string): Pick<QueueState, "items" | "index"> {
  const at = state.items.findIndex((it) => it.id === id);
  if (at < 0) return { items: state.items, index: state.index };
  const items = state.items.filter((it) => it.id !== id);
  let index = at < state.index ? state.index - 1 : state.index;
  // Past the end is allowed while another page may come; otherwise stay on the last image.
  if (index >= items.length && state.cursor === null) index = Math.max(0, items.length - 1);
  return { items, index };
}

function reducer(state: QueueState, action: Action): QueueState {
  switch (action.type) {
    case "loading":
      return { ...state, loading: true };
    case "loaded": {
      if (!action.append) {
        return {
          ...state,
          items: action.items,
          index: 0,
          cursor: action.cursor,
          total: action.total,
          loading: false,
          loaded: true,
          loadError: null,
          pageError: null,
          pageFailures: 0,
        };
      }
      const known = new Set(state.items.map((it) => it.id));
      const fresh = action.items.filter((it) => !known.has(it.id));
      return {
        ...state,
        items: [...state.items, ...fresh],
        cursor: action.cursor,
        total: action.total,
        loading: false,
        loaded: true,
        loadError: null,
        pageError: null,
        pageFailures: 0,
      };
    }
    case "loadFailed":
      if (action.append) {
        // The loaded images stay usable; the next page is tried again later (see pageRetryDelayMs).
        return { ...state, loading: false, pageError: action.message, pageFailures: state.pageFailures + 1 };
      }
      return { ...state, loading: false, loadError: action.message };
    case "total":
      return { ...state, total: action.total };
    case "claim":
      return { ...state, claims: { ...state.claims, [action.id]: action.claim } };
    case "remove": {
      const total = state.total === null ? null : Math.max(0, state.total + action.totalDelta);
      return {
        ...state,
        ...withoutItem(state, action.id),
        total,
        notice: action.notice ?? state.notice,
        status: action.status,
      };
    }
    case "move": {
      const last = state.items.length - 1 + (state.cursor !== null ? 1 : 0);
      const index = Math.min(Math.max(0, state.index + action.delta), Math.max(0, last));
      return { ...state, index, notice: null };
    }
    case "busy":
      return { ...state, busy: action.busy };
    case "decided": {
      const total = state.total === null ? null : Math.max(0, state.total - 1);
      return {
        ...state,
        ...withoutItem(state, action.item.id),
        total,
        busy: false,
        notice: null,
        status: `Marked ${action.item.name} as ${action.decision.label}.${left(total)}`,
        undoOffer: { item: action.item, decision: action.decision, expiresAt: action.expiresAt },
      };
    }
    case "undone": {
      let { items, index } = state;
      const claims = { ...state.claims };
      if (action.item) {
        const restored = action.item;
        delete claims[restored.id];
        items = [...items.filter((it) => it.id !== restored.id)];
        index = Math.min(index, items.length);
        items.splice(index, 0, restored);
      }
      const total = state.total === null ? null : state.total + 1;
      return { ...state, items, index, claims, total, busy: false, undoOffer: null, notice: null, status: action.status };
    }
    case "notice":
      return { ...state, notice: action.notice, status: action.status ?? state.status };
    case "dropUndo":
      return { ...state, undoOffer: null };
  }
}

export interface ReviewQueue {
  items: Item[];
  index: number;
  current: Item | null;
  upcoming: Item[];
  total: number | null;
  loading: boolean;
  loaded: boolean;
  loadError: string | null;
  /** The next page could not be loaded; the loaded images stay usable and it is tried again with a growing wait. */
  pageError: string | null;
  claim: ClaimState | null;
  busy: boolean;
  notice: Notice | null;
  status: string;
  undoOffer: UndoOffer | null;
  serverConfig: ServerConfig;
  decide: (label: Label, note?: string) => Promise<void>;
  next: () => void;
  previous: () => void;
  undo: () => Promise<void>;
  reload: () => Promise<void>;
  /** Ask for the next page now, after it failed to load. */
  retryPage: () => Promise<void>;
  dismissNotice: () => void;
  dropUndo: () => void;
}

/** Drive the inspector's queue: claims on open, decisions, undo, paging and polling. */
export function useReviewQueue(): ReviewQueue {
  const [state, dispatch] = useReducer(reducer, initialState);
  const stateRef = useRef(state);
  stateRef.current = state;
  const serverConfig = useRef<ServerConfig>({ undo_seconds: 30, claim_seconds: 300 });
  const pageSize = config().queuePageSize;

  const load = useCallback(
    async (append: boolean) => {
      const s = stateRef.current;
      if (s.loading) return;
      dispatch({ type: "loading" });
      try {
        const page = await fetchQueue(pageSize, append ? s.cursor : null);
        dispatch({ type: "loaded", items: page.items, cursor: page.next_cursor, total: page.total, append });
      } catch (err) {
        dispatch({ type: "loadFailed", message: errorMessage(err), append });
      }
    },
    [pageSize],
  );

  useEffect(() => {
    fetchServerConfig()
      .then((cfg) => {
        serverConfig.current = cfg;
      })
      .catch(() => {
        // Keep the documented defaults; the queue itself reports real outages.
      });
    void load(false);
  }, [load]);

  const current = state.items[state.index] ?? null;
  const currentId = current?.id ?? null;

  const claim = useCallback(async (item: Item, extending: boolean) => {
    if (!extending) dispatch({ type: "claim", id: item.id, claim: "pending" });
    try {
      await claimItem(item.id);
      dispatch({ type: "claim", id: item.id, claim: "held" });
    } catch (err) {
      if (isApiError(err, 409)) {
        dispatch({
          type: "remove",
          id: item.id,
          notice: { kind: "warning", text: `${item.name}: ${err.detail}. Moved on to the next image.` },
          status: `${item.name} is taken: ${err.detail}.`,
          totalDelta: 0,
        });
      } else if (isApiError(err, 404)) {
        dispatch({
          type: "remove",
          id: item.id,
          notice: { kind: "info", text: `${item.name} is no longer waiting: ${err.detail}. Moved on.` },
          status: `${item.name} is no longer waiting.`,
          totalDelta: -1,
        });
      } else {
        dispatch({ type: "claim", id: item.id, claim: "failed" });
        dispatch({ type: "notice", notice: { kind: "error", text: `Could not claim ${item.name}: ${errorMessage(err)}` } });
      }
    }
  }, []);

  // Opening an item claims it; coming back to one re-claims it, since the old claim may have lapsed.
  useEffect(() => {
    if (!current) return;
    void claim(current, stateRef.current.claims[current.id] === "held");
    // Keyed on the id alone: a new object for the same item must not claim it twice.
  }, [currentId]);

  // Extend the claim while the inspector is still looking at the same image.
  const claimState = currentId ? (state.claims[currentId] ?? null) : null;
  useEffect(() => {
    if (!current || claimState !== "held") return;
    const every = Math.max(5, serverConfig.current.claim_seconds * 0.5) * 1000;
    const timer = window.setInterval(() => void claim(current, true), every);
    return () => window.clearInterval(timer);
  }, [currentId, claimState]);

  // Fetch the next page before the inspector reaches the end of the loaded one. Not after a
  // failure: that would ask again at once, in a loop; the retry below waits first.
  useEffect(() => {
    if (state.cursor !== null && !state.loading && state.pageError === null && state.index >= state.items.length - 5) {
      void load(true);
    }
  }, [state.cursor, state.loading, state.pageError, state.index, state.items.length, load]);

  // After a failed next page, try again on its own with a growing wait (2 s, 4 s, ... 30 s);
  // "Try again" asks at once. Keyed on the failure count, so every failure waits afresh, and on
  // `loading`: a timer that fell on another load (which it must not start beside) is armed again
  // once that load is over, or the retrying would stop while the notice still promises it.
  const { pageError, pageFailures, loading } = state;
  useEffect(() => {
    if (pageError === null || pageFailures === 0 || loading) return;
    const timer = window.setTimeout(() => {
      if (stateRef.current.cursor !== null) void load(true);
    }, pageRetryDelayMs(pageFailures));
    return () => window.clearTimeout(timer);
  }, [pageError, pageFailures, loading, load]);

  // Keep "n left" honest while other inspectors work, and pick up new images when idle.
  useEffect(() => {
    const timer = window.setInterval(() => {
      const s = stateRef.current;
      if (s.loading) return;
      if (s.items.length === 0 && s.cursor === null) {
        void load(false);
        return;
      }
      fetchQueue(1)
        .then((page) => dispatch({ type: "total", total: page.total }))
        .catch(() => {
          // A missed refresh is harmless; the next decision reports real errors.
        });
    }, config().queuePollMs);
    return () => window.clearInterval(timer);
  }, [load]);

  const decide = useCallback(async (label: Label, note?: string) => {
    const s = stateRef.current;
    const item = s.items[s.index];
    if (!item || s.busy) return;
    dispatch({ type: "busy", busy: true });
    try {
      const decision = await decideItem(item.id, label, note);
      const windowMs = Date.parse(decision.undo_until) - Date.parse(decision.decided_at);
      // The window's length, not the server's wall clock, so clock skew cannot hide the button.
      const length = Number.isFinite(windowMs) && windowMs > 0 ? windowMs : serverConfig.current.undo_seconds * 1000;
      dispatch({ type: "decided", item, decision, expiresAt: Date.now() + length });
    } catch (err) {
      if (isApiError(err, 409, 404)) {
        dispatch({ type: "busy", busy: false });
        dispatch({
          type: "remove",
          id: item.id,
          notice: { kind: "warning", text: `${item.name}: ${err.detail}. Nothing was overwritten; moved on.` },
          status: `Not saved: ${err.detail}.`,
          totalDelta: isApiError(err, 404) ? -1 : 0,
        });
      } else {
        dispatch({ type: "busy", busy: false });
        dispatch({
          type: "notice",
          notice: { kind: "error", text: `Could not save the decision on ${item.name}: ${errorMessage(err)}` },
          status: "Decision not saved.",
        });
      }
    }
  }, []);

  const undo = useCallback(async () => {
    const s = stateRef.current;
    if (s.busy) return;
    dispatch({ type: "busy", busy: true });
    try {
      const undone = await undoLast();
      let item: Item | null = null;
      try {
        item = await fetchItem(undone.id);
      } catch {
        item = s.undoOffer?.item.id === undone.id ? s.undoOffer.item : null;
      }
      const name = item?.name ?? undone.key.split("/").pop() ?? undone.key;
      dispatch({ type: "undone", item, status: `Undone: ${name} is back in the queue.` });
    } catch (err) {
      dispatch({ type: "dropUndo" });
      dispatch({ type: "busy", busy: false });
      dispatch({
        type: "notice",
        notice: { kind: "warning", text: `Cannot undo: ${errorMessage(err)}` },
        status: `Cannot undo: ${errorMessage(err)}`,
      });
    }
  }, []);

  const next = useCallback(() => {
    const s = stateRef.current;
    if (s.index >= s.items.length - 1 && s.cursor === null) {
      dispatch({ type: "notice", notice: null, status: "This is the last image in the queue." });
      return;
    }
    dispatch({ type: "move", delta: 1 });
  }, []);

  const previous = useCallback(() => {
    if (stateRef.current.index === 0) {
      dispatch({ type: "notice", notice: null, status: "This is the first image in the queue." });
      return;
    }
    dispatch({ type: "move", delta: -1 });
  }, []);

  const reload = useCallback(() => load(false), [load]);
  const retryPage = useCallback(async () => {
    if (stateRef.current.cursor !== null) await load(true);
  }, [load]);
  const dismissNotice = useCallback(() => dispatch({ type: "notice", notice: null }), []);
  const dropUndo = useCallback(() => dispatch({ type: "dropUndo" }), []);

  const upcoming = useMemo(() => state.items.slice(state.index + 1, state.index + 3), [state.items, state.index]);

  return {
    items: state.items,
    index: state.index,
    current,
    upcoming,
    total: state.total,
    loading: state.loading,
    loaded: state.loaded,
    loadError: state.loadError,
    pageError: state.pageError,
    claim: claimState,
    busy: state.busy,
    notice: state.notice,
    status: state.status,
    undoOffer: state.undoOffer,
    serverConfig: serverConfig.current,
    decide,
    next,
    previous,
    undo,
    reload,
    retryPage,
    dismissNotice,
    dropUndo,
  };
}
