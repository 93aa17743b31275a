import { startAssistWidget, type WidgetOptions } from "./index.js";

/** The page's sanitiser hooks, set before the script tag: `window.opsplaneAssist = { sanitiseNetwork(entry) { … } }`. */
type PageHooks = Pick<WidgetOptions, "sanitiseNetwork" | "sanitiseConsole">;

// `<script src="https://relay/assist/widget.js" data-unmasked=".public-field"></script>`: the relay is where the script came from.
const script = document.currentScript as HTMLScriptElement | null;
if (script) {
  startAssistWidget({
    relay: script.dataset.relay ?? new URL(script.src).origin,
    unmaskedInputSelector: script.dataset.unmasked,
    ...(window as unknown as { opsplaneAssist?: PageHooks }).opsplaneAssist,
  });
}
