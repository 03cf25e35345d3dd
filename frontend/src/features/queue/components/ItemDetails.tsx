import { percent, when } from "../../../lib/format";
import type { Item } from "../../../lib/types";
import type { ClaimState } from "../hooks/useReviewQueue";

interface ItemDetailsProps {
  item: Item;
  claim: ClaimState | null;
}

const MODEL_LABEL: Record<Item["model_label"], string> = { ok: "OK", defect: "Defect", unclear: "Unclear" };

function claimText(claim: ClaimState | null): string {
  switch (claim) {
    case "held":
      return "Claimed by you";
    case "pending":
      return "Claiming…";
    case "failed":
      return "Not claimed";
    default:
      return "–";
  }
}

/** What the model said about the image and where it came from. */
export function ItemDetails({ item, claim }: ItemDetailsProps) {
  return (
    <section className="details" aria-label="Image details">
      <h2 className="details-name" title={item.key}>
        {item.name}
      </h2>
      <dl className="details-grid">
        <dt>Model says</dt>
        <dd>
          <span className={`chip chip-${item.model_label}`}>{MODEL_LABEL[item.model_label]}</span>{" "}
          {percent(item.confidence)} sure
        </dd>
        <dt>P(defect)</dt>
        <dd>{percent(item.p_defect)}</dd>
        {item.reason && (
          <>
            <dt>Reason</dt>
            <dd>{item.reason}</dd>
          </>
        )}
        <dt>Line / camera</dt>
        <dd>
          {item.line ?? "–"} / {item.camera ?? "–"}
        </dd>
        <dt>Uploaded</dt>
        <dd>
          <time dateTime={item.uploaded_at}>{when(item.uploaded_at)}</time>
        </dd>
        <dt>Model</dt>
        <dd className="mono">{item.model_version}</dd>
        <dt>Claim</dt>
        <dd className={claim === "held" ? "claim-held" : undefined}>{claimText(claim)}</dd>
      </dl>
    </section>
  );
}
