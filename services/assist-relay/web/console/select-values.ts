/**
 * rrweb rebuilds a `<select>` with its recorded value as an attribute, which browsers ignore, and with
 * no `selected` option when lists are masked, so a rebuilt list would show its first option: after a
 * full snapshot, or when the page re-renders the list, the developer would see a choice the operator
 * never made. Each rebuilt list gets its recorded value once: an allow-listed list shows the operator's
 * option, a masked one (`***`) shows none, as a masked field shows asterisks, also when the page adds
 * options to it. Later changes come as input events, which rrweb applies itself.
 */
export function keepSelectValues(doc: Document): () => void {
  const done = new WeakSet<Element>();
  const apply = (root: Node) => {
    if (!(root instanceof root.ownerDocument!.defaultView!.Element)) return;
    for (const select of [root, ...root.querySelectorAll("select")]) {
      if (select.localName !== "select" || done.has(select)) continue;
      done.add(select);
      const value = select.getAttribute("value");
      if (value !== null) (select as HTMLSelectElement).value = value;
    }
  };
  apply(doc.documentElement);
  // Options added to a list (a re-render) make the browser choose the first one: a masked list goes back to none.
  const unchoose = (target: Node) => {
    const select = target instanceof target.ownerDocument!.defaultView!.Element ? target.closest("select") : null;
    if (select && /^\*+$/.test(select.getAttribute("value") ?? "")) (select as HTMLSelectElement).selectedIndex = -1;
  };
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      for (const node of r.addedNodes) apply(node);
      if (r.addedNodes.length) unchoose(r.target);
    }
  });
  observer.observe(doc, { childList: true, subtree: true });
  return () => observer.disconnect();
}
