import { startAssistWidget } from "./index.js";

// `<script src="https://relay/assist/widget.js" data-unmasked=".public-field"></script>`: the relay is where the script came from.
const script = document.currentScript as HTMLScriptElement | null;
if (script) {
  startAssistWidget({
    relay: script.dataset.relay ?? new URL(script.src).origin,
    unmaskedInputSelector: script.dataset.unmasked,
  });
}
