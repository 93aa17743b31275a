/**
 * The widget's styles go through the CSSOM (`element.style`), never through style attributes: a page
 * with a strict `style-src` Content-Security-Policy (no 'unsafe-inline') makes the browser ignore
 * style attributes in markup and `setAttribute("style", …)`, which showed every hidden section of
 * the widget, unstyled. Scripts may still set `element.style`, so markup carries its styles in
 * `data-css` and {@link applyCss} moves them to the CSSOM.
 */
export function applyCss(root: HTMLElement): void {
  for (const el of [root, ...root.querySelectorAll<HTMLElement>("[data-css]")]) {
    const text = el.dataset.css;
    if (text === undefined) continue;
    el.style.cssText = text;
    el.removeAttribute("data-css");
  }
}
