/**
 * Debian's Chromium, as browser tests and benches launch it with playwright-core:
 * `chromium.launch({ executablePath: chromiumPath, args: chromiumArgs })`. The flags keep a
 * headless root run from reaching for the network this machine does not have.
 */
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
