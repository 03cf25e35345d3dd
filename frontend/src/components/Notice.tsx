import type { ReactNode } from "react";

interface NoticeProps {
  kind: "info" | "warning" | "error";
  children: ReactNode;
  onDismiss?: () => void;
  /** One button under the message, e.g. "Try again". */
  action?: { label: string; onClick: () => void; disabled?: boolean };
}

/** An inline message; errors and warnings are announced at once. */
export function Notice({ kind, children, onDismiss, action }: NoticeProps) {
  return (
    <div className={`notice notice-${kind}`} role={kind === "info" ? "status" : "alert"}>
      {action ? (
        <div className="notice-body">
          <span>{children}</span>
          <button type="button" className="btn notice-action" onClick={action.onClick} disabled={action.disabled}>
            {action.label}
          </button>
        </div>
      ) : (
        <span>{children}</span>
      )}
      {onDismiss && (
        <button type="button" className="notice-close" onClick={onDismiss} aria-label="Dismiss message">
          ×
        </button>
      )}
    </div>
  );
}
