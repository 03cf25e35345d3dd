/** One keyboard key as shown in the shortcut lists and on buttons. */
export function Kbd({ children }: { children: string }) {
  return <kbd className="kbd">{children}</kbd>;
}
