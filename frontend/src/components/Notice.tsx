import type { ReactNode } from "react";

interface NoticeProps {
  kind: "info" | "warning" | "error";
  children: ReactNode;
  onDismiss?: () => void;
}

/** An inline message; errors and warnings are announced at once. */
export function Notice({ kind, children, onDismiss }: NoticeProps) {
  return (
    <div className={`notice notice-${kind}`} role={kind === "info" ? "status" : "alert"}>
      <span>{children}</span>
      {onDismiss && (
        <button type="button" className="notice-close" onClick={onDismiss} aria-label="Dismiss message">
          ×
        </button>
      )}
    </div>
  );
}
