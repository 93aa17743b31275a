import dns from "node:dns";
import net from "node:net";
import { badRequest, unavailable } from "@opsplane/platform";

/**
 * Where environment base URLs may point. The dispatcher sends third parties' callbacks (and
 * replays) to these URLs from inside the network, so a base URL is a way in: link-local and cloud
 * metadata addresses are always refused (a callback forwarded there would read instance
 * credentials), and with ENVIRONMENT_URL_ALLOW set, only the hosts and networks it lists are allowed.
 * Names are checked by what they resolve to, when an environment is saved and again at every
 * connection (a name that later resolves elsewhere is refused then).
 */
export interface UrlPolicy {
  /** Throws 400 naming why `url`'s host may not be an environment (503 when DNS does not answer). */
  check(url: URL): Promise<void>;
  /** `dns.lookup` for outgoing connections, refusing what `check` refuses. */
  lookup: net.LookupFunction;
}

/** ENVIRONMENT_URL_ALLOW, parsed: host names (`*.example.com` for any subdomain), addresses and CIDR ranges. */
export interface UrlAllowList {
  hosts: string[];
  networks: net.BlockList;
  /** False when the variable is empty: any host but the refused ones. */
  configured: boolean;
}

/** Instance-metadata host names of the clouds (GCP); their addresses are refused below too. */
const metadataNames = new Set(["metadata.google.internal", "metadata.goog"]);

/** Link-local ranges (AWS, GCP and Azure serve metadata at 169.254.169.254), AWS's IPv6 metadata address, Alibaba Cloud's. */
const refused = new net.BlockList();
refused.addSubnet("169.254.0.0", 16, "ipv4");
refused.addSubnet("fe80::", 10, "ipv6");
refused.addAddress("fd00:ec2::254", "ipv6");
refused.addAddress("100.100.100.200", "ipv4");

const normalHost = (host: string) =>
  host
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "")
    .toLowerCase();

/** An address as BlockList reads it: IPv4-mapped IPv6 (`::ffff:a9fe:a9fe`) as the IPv4 address it is. */
function asFamily(address: string): { address: string; family: "ipv4" | "ipv6" } {
  if (net.isIPv4(address)) return { address, family: "ipv4" };
  const mapped = /^::ffff:(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(address);
  if (mapped) {
    if (mapped[1]) return { address: mapped[1], family: "ipv4" };
    const hi = Number.parseInt(mapped[2]!, 16);
    const lo = Number.parseInt(mapped[3]!, 16);
    return { address: [hi >> 8, hi & 255, lo >> 8, lo & 255].join("."), family: "ipv4" };
  }
  return { address, family: "ipv6" };
}

const isRefused = (address: string) => {
  const a = asFamily(address);
  return refused.check(a.address, a.family);
};

/** Parses ENVIRONMENT_URL_ALLOW (comma or whitespace separated), or answers what is wrong with it. */
export function parseUrlAllowList(value: string): UrlAllowList | string {
  const hosts: string[] = [];
  const networks = new net.BlockList();
  const entries = value.split(/[\s,]+/).filter(Boolean);
  for (const entry of entries) {
    const [ip, bits, extra] = entry.split("/");
    if (ip && net.isIP(ip)) {
      const { address, family } = asFamily(ip);
      const max = family === "ipv4" ? 32 : 128;
      const prefix = bits === undefined ? max : Number(bits);
      if (extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max)
        return `ENVIRONMENT_URL_ALLOW: "${entry}" is not an address or a CIDR range`;
      networks.addSubnet(address, prefix, family);
    } else if (/^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/i.test(entry) && bits === undefined) {
      hosts.push(normalHost(entry));
    } else {
      return `ENVIRONMENT_URL_ALLOW: "${entry}" is not a host name, an address or a CIDR range`;
    }
  }
  return { hosts, networks, configured: entries.length > 0 };
}

function hostAllowed(allow: UrlAllowList, host: string): boolean {
  return allow.hosts.some((h) => (h.startsWith("*.") ? host.endsWith(h.slice(1)) : host === h));
}

function inNetworks(allow: UrlAllowList, address: string): boolean {
  const a = asFamily(address);
  return allow.networks.check(a.address, a.family);
}

/** Why `host` resolving to `addresses` may not be an environment, or undefined when it may. */
function refusal(allow: UrlAllowList, host: string, addresses: string[]): string | undefined {
  const bad = addresses.find(isRefused);
  if (bad !== undefined)
    return bad === host
      ? `${host} is a link-local or cloud metadata address`
      : `${host} resolves to ${bad}, a link-local or cloud metadata address`;
  if (!allow.configured || hostAllowed(allow, host)) return undefined;
  if (addresses.length && addresses.every((a) => inNetworks(allow, a))) return undefined;
  return `${host} is not in ENVIRONMENT_URL_ALLOW (hosts and networks environments may point to)`;
}

const notFoundCodes = new Set(["ENOTFOUND", "ENODATA", "EAI_NONAME", "EAI_NODATA"]);

/** Every address a name resolves to (the system resolver, as connections use it). */
export type ResolveAll = (host: string) => Promise<dns.LookupAddress[]>;

const systemResolver: ResolveAll = (host) => dns.promises.lookup(host, { all: true, verbatim: true });

export function createUrlPolicy(allow: UrlAllowList, resolveAll: ResolveAll = systemResolver): UrlPolicy {
  return {
    async check(url) {
      const host = normalHost(url.hostname);
      if (metadataNames.has(host)) throw badRequest(`baseUrl refused: ${host} is a cloud metadata service`, { field: "baseUrl" });
      let addresses: string[];
      if (net.isIP(host)) addresses = [host];
      else {
        try {
          addresses = (await resolveAll(host)).map((a) => a.address);
        } catch (err) {
          // A name not resolving yet (a test environment still being set up) is checked at each connection;
          // only a name the allow-list admits by its addresses needs them now.
          if (!allow.configured || hostAllowed(allow, host)) return;
          const code = (err as NodeJS.ErrnoException).code ?? "";
          if (notFoundCodes.has(code))
            throw badRequest(`baseUrl host ${host} does not resolve, so it cannot be checked against ENVIRONMENT_URL_ALLOW`, {
              field: "baseUrl",
            });
          throw unavailable(`cannot resolve baseUrl host ${host} now (${code || (err as Error).message}); retry later`, 5);
        }
      }
      const why = refusal(allow, host, addresses);
      if (why) throw badRequest(`baseUrl refused: ${why}`, { field: "baseUrl" });
    },
    lookup(hostname, options, callback) {
      const host = normalHost(hostname);
      const refuse = (why: string) => callback(Object.assign(new Error(`refused: ${why}`), { code: "EREFUSED" }), "", 4);
      if (metadataNames.has(host)) return refuse(`${host} is a cloud metadata service`);
      const family = options.family === 4 || options.family === 6 ? options.family : undefined;
      resolveAll(hostname).then(
        (all) => {
          const found = family ? all.filter((a) => a.family === family) : all;
          const why = refusal(
            allow,
            host,
            found.map((a) => a.address),
          );
          if (why) return refuse(why);
          if (!found.length) return callback(Object.assign(new Error(`${host}: no address`), { code: "ENOTFOUND" }), "", 4);
          if (options.all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, found);
          callback(null, found[0]!.address, found[0]!.family);
        },
        (err: NodeJS.ErrnoException) => callback(err, "", 4),
      );
    },
  };
}
