/** Fetch the next images into the browser cache so the next decision shows at once. */
import { useEffect, useRef } from "react";

/** Preload `urls`; keeps references so the browser does not drop the requests. */
export function usePreload(urls: string[]): void {
  const held = useRef<HTMLImageElement[]>([]);
  const key = urls.join("\n");

  useEffect(() => {
    held.current = urls.map((url) => {
      const img = new Image();
      img.decoding = "async";
      img.src = url;
      return img;
    });
    // The joined key carries the list; a new array with the same URLs must not refetch.
  }, [key]);
}
