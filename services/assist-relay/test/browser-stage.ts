import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { chromiumArgs, chromiumPath } from "@opsplane/testing";
import { type Browser, type BrowserContextOptions, chromium, type Page } from "playwright-core";
import { startRelays } from "./harness.js";

/** Browser tests skip, saying why, where Chromium is not installed. */
export const browserSkip = existsSync(chromiumPath) ? false : `${chromiumPath} not found`;

export interface BrowserStage {
  env: Awaited<ReturnType<typeof startRelays>>;
  /** The first relay's URL, the one the site's pages load the widget from. */
  relay: string;
  siteUrl: string;
  browser: Browser;
  /** The operator's tab, not yet on the site: a test attaches its listeners, then goes to `siteUrl`. */
  operator: Page;
  /** Another person's tab (a developer's), in a context of its own. */
  newPage(context?: BrowserContextOptions): Promise<Page>;
  close(): Promise<void>;
}

/**
 * The stage every browser test plays on: the operator's site on a local HTTP server, relays that
 * allow its origin, and one Chromium. `site` answers the site's requests, given the relay's URL
 * for the widget's script tag.
 */
export async function startBrowserStage(opts: {
  site: (req: IncomingMessage, res: ServerResponse, relay: string) => void;
  relays?: number;
  redis?: boolean;
  relayEnv?: Record<string, string>;
}): Promise<BrowserStage> {
  let relay = "";
  const site = createServer((req, res) => opts.site(req, res, relay));
  let env: BrowserStage["env"] | undefined;
  let browser: Browser | undefined;
  const close = async () => {
    await browser?.close();
    await env?.close();
    site.close();
  };
  try {
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    const siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    env = await startRelays(opts.relays ?? 1, {
      redis: opts.redis ?? true,
      origins: [siteUrl],
      ...(opts.relayEnv ? { env: opts.relayEnv } : {}),
    });
    relay = env.relays[0]!.url;
    const started = await chromium.launch({ executablePath: chromiumPath, args: chromiumArgs });
    browser = started;
    const newPage = async (context?: BrowserContextOptions) => (await started.newContext(context)).newPage();
    return { env, relay, siteUrl, browser: started, operator: await newPage(), newPage, close };
  } catch (err) {
    // A stage half set up would keep the test process alive (the site's server, the relays).
    await close();
    throw err;
  }
}
