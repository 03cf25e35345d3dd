import { Kbd } from "../../../components/Kbd";
import { SHORTCUT_HELP } from "../hooks/useShortcuts";

/** The keyboard shortcuts, always on screen. */
export function ShortcutList() {
  return (
    <section className="shortcuts" aria-labelledby="shortcuts-title">
      <h2 id="shortcuts-title" className="section-title">
        Keyboard
      </h2>
      <dl>
        {SHORTCUT_HELP.map((s) => (
          <div key={s.label} className="shortcut">
            <dt>
              {s.keys.map((k, i) => (
                <span key={k}>
                  {i > 0 && <span className="muted"> / </span>}
                  <Kbd>{k}</Kbd>
                </span>
              ))}
            </dt>
            <dd>{s.label}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}
