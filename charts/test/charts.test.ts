// Static checks of the Helm charts, dashboards and alert rules, for a machine without helm:
// the things a platform team would otherwise find at install time or on an empty panel.
// Run: node --import tsx --test charts/test/charts.test.ts
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import Ajv from "ajv";
import { parse, parseAllDocuments } from "yaml";

const repo = path.resolve(__dirname, "..", "..");
const charts = path.join(repo, "charts");
const lib = path.join(charts, "opsplane-lib");

const ports: Record<string, number> = {
  "assist-relay": 8081,
  "errcode-scanner": 8082,
  "config-center": 8083,
  "control-center": 8084,
  "monitor-center": 8085,
  "callback-dispatcher": 8086,
};
const services = Object.keys(ports);

type Values = Record<string, unknown>;
const read = (...p: string[]) => readFileSync(path.join(...p), "utf8");
const yamlOf = (...p: string[]) => parse(read(...p)) as Values;
const valuesOf = (svc: string) => yamlOf(charts, svc, "values.yaml");
/** Values as helm validates them: it deletes keys whose value is null (`key: null` unsets a default). */
const helmValues = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(helmValues)
    : v !== null && typeof v === "object"
      ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null).map(([k, x]) => [k, helmValues(x)]))
      : v;
const templateFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => /\.(ya?ml|tpl|txt)$/.test(f))
    .map((f) => path.join(dir, f));

/** Names the library defines, e.g. "opsplane-lib.deployment". */
function libraryDefines(): Set<string> {
  const names = new Set<string>();
  for (const file of templateFiles(path.join(lib, "templates")))
    for (const m of read(file).matchAll(/\{\{-?\s*define\s+"([^"]+)"/g)) names.add(m[1]!);
  return names;
}

describe("chart metadata", () => {
  test("the library chart is a v2 library", () => {
    const chart = yamlOf(lib, "Chart.yaml");
    assert.equal(chart.apiVersion, "v2");
    assert.equal(chart.type, "library");
    assert.equal(existsSync(path.join(lib, "values.yaml")), false, "a library chart's values would be ignored");
  });

  for (const svc of services) {
    test(`${svc}: Chart.yaml is a v2 application depending on the local library`, () => {
      const chart = yamlOf(charts, svc, "Chart.yaml");
      const libChart = yamlOf(lib, "Chart.yaml");
      assert.equal(chart.apiVersion, "v2");
      assert.equal(chart.name, svc);
      assert.equal(chart.type, "application");
      assert.match(String(chart.appVersion), /^\d+\.\d+\.\d+/);
      const deps = chart.dependencies as Array<{ name: string; version: string; repository: string }>;
      assert.deepEqual(deps, [{ name: "opsplane-lib", version: libChart.version, repository: "file://../opsplane-lib" }]);
    });

    test(`${svc}: has NOTES.txt, README.md with a values table, and a schema`, () => {
      assert.ok(existsSync(path.join(charts, svc, "templates", "NOTES.txt")));
      assert.ok(existsSync(path.join(charts, svc, "values.schema.json")));
      const readme = read(charts, svc, "README.md");
      assert.match(readme, /\| key \| type \| default \| description \|/);
      for (const key of ["image.repository", "port", "existingSecret", "secretEnv", "env", "networkPolicy.enabled"])
        assert.ok(readme.includes(`| \`${key}\` |`), `README values table lacks ${key}`);
    });
  }
});

describe("values", () => {
  for (const svc of services) {
    const schema = JSON.parse(read(charts, svc, "values.schema.json")) as object;
    const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

    test(`${svc}: values.yaml validates against values.schema.json, as helm sees it`, () => {
      const ok = validate(helmValues(valuesOf(svc)));
      assert.ok(ok, JSON.stringify(validate.errors, null, 2));
    });

    test(`${svc}: a key set to null (helm's way to unset it) is not refused`, () => {
      const values = valuesOf(svc) as Values & { autoscaling: Values };
      const unset = { ...values, autoscaling: { ...values.autoscaling, targetCPUUtilizationPercentage: null, targetMemoryUtilizationPercentage: null } };
      assert.ok(validate(helmValues(unset)), JSON.stringify(validate.errors, null, 2));
    });

    test(`${svc}: the schema rejects typos and bad values at install time`, () => {
      const values = valuesOf(svc);
      assert.equal(validate({ ...values, replicaCont: 3 }), false, "unknown top-level key accepted");
      assert.equal(validate({ ...values, config: { ...(values.config as Values), logLevel: "verbose" } }), false, "bad LOG_LEVEL accepted");
      assert.equal(validate({ ...values, config: { ...(values.config as Values), bus: "rabbit" } }), false, "bad BUS accepted");
      assert.equal(validate({ ...values, env: { "not-an-env-name": "x" } }), false, "bad env name accepted");
      assert.equal(validate({ ...values, image: { ...(values.image as Values), pullPolicy: "Sometimes" } }), false);
    });

    test(`${svc}: port is ${ports[svc]}`, () => {
      assert.equal(valuesOf(svc).port, ports[svc]);
    });

    test(`${svc}: env holds only service-specific variables`, () => {
      // The chart sets these itself (from port, config.*, otel.* or the Secret); helm fails on them in env.
      const managed = new Set([
        "PORT",
        "BUS",
        "KAFKA_BROKERS",
        "LOG_LEVEL",
        "DATABASE_POOL_MAX",
        "BODY_LIMIT_BYTES",
        "SHUTDOWN_TIMEOUT_MS",
        "DATABASE_URL",
        "REDIS_URL",
        "AUTH_API_KEYS",
        "AUTH_APP_CREDENTIALS",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_RESOURCE_ATTRIBUTES",
      ]);
      const env = (valuesOf(svc).env ?? {}) as Values;
      const clashes = Object.keys(env).filter((k) => managed.has(k));
      assert.deepEqual(clashes, [], `move ${clashes.join(", ")} out of env (see charts/README.md)`);
    });

    test(`${svc}: the pod stops within its grace period`, () => {
      const v = valuesOf(svc) as { config: { shutdownTimeoutMs: number }; lifecycle: { preStopSleepSeconds: number } };
      // Mirrors opsplane-lib.terminationGracePeriodSeconds: preStop + SHUTDOWN_TIMEOUT_MS + margin.
      const grace = Math.ceil(v.config.shutdownTimeoutMs / 1000) + v.lifecycle.preStopSleepSeconds + 5;
      assert.ok(grace * 1000 > v.config.shutdownTimeoutMs + v.lifecycle.preStopSleepSeconds * 1000);
    });
  }
});

describe("what the schemas refuse at install time", () => {
  const validatorOf = (svc: string) => new Ajv({ allErrors: true, strict: false }).compile(JSON.parse(read(charts, svc, "values.schema.json")) as object);

  // Without Redis each replica holds its own registrations (callback-dispatcher) or sessions (assist-relay).
  for (const svc of ["assist-relay", "callback-dispatcher"]) {
    test(`${svc}: more than one replica, or an autoscaler that may add them, needs REDIS_URL in the Secret`, () => {
      const validate = validatorOf(svc);
      const values = valuesOf(svc) as Values & { secretKeys: { required: string[] }; autoscaling: Values };
      const withRedisKey = { ...values, secretKeys: { ...values.secretKeys, required: [...values.secretKeys.required, "REDIS_URL"] } };
      const autoscaled = { autoscaling: { ...values.autoscaling, enabled: true, minReplicas: 1, maxReplicas: 4 } };
      assert.equal(values.replicaCount, 1, "the default must install without Redis");
      assert.equal(validate({ ...values, replicaCount: 3 }), false, "3 replicas without Redis accepted");
      assert.equal(validate({ ...values, ...autoscaled }), false, "autoscaling to 4 without Redis accepted");
      assert.equal(validate({ ...withRedisKey, replicaCount: 3 }), true, JSON.stringify(validate.errors));
      assert.equal(validate({ ...withRedisKey, ...autoscaled }), true, JSON.stringify(validate.errors));
      assert.equal(validate({ ...values, replicaCount: 3, secretEnv: { DATABASE_URL: "postgres://x", REDIS_URL: "redis://r" } }), true);
      // The service reads an empty variable as unset: every replica would run without Redis.
      assert.equal(
        validate({ ...values, replicaCount: 3, secretEnv: { DATABASE_URL: "postgres://x", REDIS_URL: "" } }),
        false,
        "3 replicas with an empty REDIS_URL accepted",
      );
      assert.equal(validate({ ...values, ...autoscaled, autoscaling: { ...autoscaled.autoscaling, maxReplicas: 1 } }), true);
    });
  }

  for (const svc of services) {
    test(`${svc}: a DATABASE_URL or REDIS_URL in secretEnv that is empty or not such a URL is refused`, () => {
      const validate = validatorOf(svc);
      const values = valuesOf(svc);
      const withSecrets = (secretEnv: Values) => validate({ ...values, secretEnv });
      assert.equal(withSecrets({ DATABASE_URL: "postgres://x", REDIS_URL: "rediss://r" }), true, JSON.stringify(validate.errors));
      assert.equal(withSecrets({ DATABASE_URL: "postgresql://x" }), true, JSON.stringify(validate.errors));
      // Empty, the service reads it as unset: a DATABASE_URL so is a pod that never starts, a REDIS_URL so no Redis.
      assert.equal(withSecrets({ DATABASE_URL: "" }), false, "empty DATABASE_URL accepted");
      assert.equal(withSecrets({ DATABASE_URL: "postgres://x", REDIS_URL: "" }), false, "empty REDIS_URL accepted");
      assert.equal(withSecrets({ DATABASE_URL: "mysql://x" }), false, "a DATABASE_URL that is not postgres:// accepted");
      assert.equal(withSecrets({ DATABASE_URL: "postgres://x", REDIS_URL: "localhost:6379" }), false, "a REDIS_URL that is not redis:// accepted");
    });
  }

  test("every chart takes the namespaces allowed through its NetworkPolicy by name", () => {
    for (const svc of services) {
      const validate = validatorOf(svc);
      const values = valuesOf(svc) as Values & { networkPolicy: Values };
      const allowing = (ingressNamespaces: unknown) => ({ ...values, networkPolicy: { ...values.networkPolicy, ingressNamespaces } });
      assert.deepEqual(values.networkPolicy.ingressNamespaces, [], svc);
      assert.equal(validate(allowing(["sit", "uat-2"])), true, `${svc}: ${JSON.stringify(validate.errors)}`);
      assert.equal(validate(allowing(["Not_A_Namespace"])), false, `${svc}: a bad namespace name accepted`);
    }
    // The library renders each name as a namespaceSelector on the label Kubernetes sets on every namespace.
    const policy = read(lib, "templates", "_networkpolicy.tpl");
    assert.match(policy, /range \.Values\.networkPolicy\.ingressNamespaces \}\}\s+- namespaceSelector:\s+matchLabels:\s+kubernetes\.io\/metadata\.name: \{\{ \. \| quote \}\}/);
  });

  describe("callback-dispatcher: the public Ingress publishes callback paths only", () => {
    // The paths the dispatcher serves itself (services/callback-dispatcher/src/routes/callbacks.ts);
    // every other path is a callback.
    const source = read(repo, "services/callback-dispatcher/src/routes/callbacks.ts");
    const prefixes = JSON.parse(/reservedPrefixes = (\[[^\]]*\])/.exec(source)?.[1] ?? "null") as string[];
    const exact = JSON.parse(/ownPaths = new Set\((\[[^\]]*\])\)/.exec(source)?.[1] ?? "null") as string[];
    const isOwn = (url: string) => prefixes.some((p) => url.startsWith(p)) || exact.includes(url);
    const ownRequests = [
      "/_dispatcher/v1/environments",
      "/_dispatcher/v1/registrations",
      "/ops.v1.CallbackDispatcherService/DryRun",
      "/ops.v1.ServiceInfoService/GetServiceInfo",
      "/_audit/v1/entries",
      ...exact,
    ];
    /** Whether an Ingress path routes the request path (Kubernetes' rules: Prefix matches whole path elements). */
    const routes = (rule: { path: string; pathType?: string }, request: string) => {
      if (rule.pathType === "Exact") return request === rule.path;
      const prefix = rule.path.replace(/\/+$/, "");
      return request === prefix || request.startsWith(`${prefix}/`);
    };
    const validate = validatorOf("callback-dispatcher");
    type Ingress = { hosts: Array<{ host: string; paths: Array<{ path: string; pathType?: string }> }> };
    const values = valuesOf("callback-dispatcher") as Values & { ingress: Ingress };
    const withPath = (path: string, pathType = "Prefix") => ({
      ...values,
      ingress: { ...values.ingress, enabled: true, hosts: [{ host: "callbacks.example.com", paths: [{ path, pathType }] }] },
    });

    test("the dispatcher's own paths are known", () => {
      assert.deepEqual(prefixes, ["/_dispatcher/", "/ops.v1.", "/_audit/"]);
      assert.deepEqual(exact.sort(), ["/healthz", "/metrics", "/readyz"]);
      assert.deepEqual(ownRequests.filter((r) => !isOwn(r)), []);
    });

    test("the default paths route none of the dispatcher's own paths", () => {
      const paths = values.ingress.hosts.flatMap((h) => h.paths);
      assert.ok(paths.length > 0);
      for (const rule of paths) assert.deepEqual(ownRequests.filter((r) => routes(rule, r)), [], `${rule.path} publishes them`);
    });

    test("the schema refuses every path that would publish one of them, and accepts callback paths", () => {
      const probes = [
        "/",
        "/_dispatcher",
        "/_dispatcher/",
        "/_dispatcher/v1",
        "/ops.v1.CallbackDispatcherService",
        "/_audit",
        "/_audit/v1",
        "/metrics",
        "/readyz/",
        "/healthz",
      ];
      for (const pathType of ["Prefix", "Exact"])
        for (const path of probes.filter((p) => ownRequests.some((r) => routes({ path: p, pathType }, r))))
          assert.equal(validate(withPath(path, pathType)), false, `${pathType} ${path} publishes an own path but was accepted`);
      for (const path of ["/notify", "/pay/callback", "/metrics-report", "/notify/metrics", "/api/ops.v1"])
        assert.equal(validate(withPath(path)), true, `callback path ${path} refused: ${JSON.stringify(validate.errors)}`);
      assert.equal(validate(withPath("/notify", "ImplementationSpecific")), false, "ImplementationSpecific matching is the controller's: refused");
    });
  });
});

describe("templates", () => {
  const defines = libraryDefines();

  test("the library defines every resource a service chart needs", () => {
    for (const name of ["deployment", "service", "serviceaccount", "configmap", "secret", "hpa", "pdb", "servicemonitor", "networkpolicy", "ingress", "notes"])
      assert.ok(defines.has(`opsplane-lib.${name}`), `opsplane-lib.${name} is not defined`);
  });

  const includeNames = (text: string) => [...text.matchAll(/(?:include|template)\s+"(opsplane-lib\.[^"]+)"/g)].map((m) => m[1]!);

  test("the library includes only templates it defines", () => {
    for (const file of templateFiles(path.join(lib, "templates")))
      for (const name of includeNames(read(file))) assert.ok(defines.has(name), `${path.basename(file)} includes undefined ${name}`);
  });

  for (const svc of services) {
    test(`${svc}: templates include only library templates that exist`, () => {
      const files = templateFiles(path.join(charts, svc, "templates"));
      assert.ok(files.length >= 10);
      const used = new Set<string>();
      for (const file of files)
        for (const name of includeNames(read(file))) {
          assert.ok(defines.has(name), `${svc}/templates/${path.basename(file)} includes undefined ${name}`);
          used.add(name);
        }
      for (const kind of ["deployment", "service", "configmap", "pdb"]) assert.ok(used.has(`opsplane-lib.${kind}`), `${svc} does not render ${kind}`);
    });

    test(`${svc}: every .Values path the library reads exists in values.yaml`, () => {
      const values = valuesOf(svc);
      const missing: string[] = [];
      for (const file of templateFiles(path.join(lib, "templates")))
        for (const m of read(file).matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
          let node: unknown = values;
          for (const key of m[1]!.slice(1).split(".")) {
            if (node === null || typeof node !== "object") break; // a map's own keys (env, secretEnv) are free-form
            if (!(key in (node as Values))) {
              missing.push(`${m[1]!.slice(1)} (${path.basename(file)})`);
              break;
            }
            node = (node as Values)[key];
          }
        }
      assert.deepEqual([...new Set(missing)], []);
    });
  }
});

describe("images and skaffold", () => {
  const skaffold = parse(read(repo, "skaffold.yaml")) as {
    apiVersion: string;
    build: { artifacts: Array<{ image: string; context: string; docker: { dockerfile: string; buildArgs: Record<string, string> } }> };
    deploy: { helm: { releases: Array<{ name: string; chartPath: string }> } };
    profiles: Array<{ name: string; portForward: Array<{ resourceName: string; port: number }> }>;
  };

  test("skaffold builds and deploys every service", () => {
    assert.match(skaffold.apiVersion, /^skaffold\/v4beta\d+$/);
    for (const a of skaffold.build.artifacts) {
      assert.equal(a.context, ".");
      assert.equal(a.docker.dockerfile, "Dockerfile");
    }
    assert.deepEqual(
      Object.fromEntries(skaffold.build.artifacts.map((a) => [a.docker.buildArgs.SERVICE, Number(a.docker.buildArgs.PORT)])),
      ports,
    );
    assert.deepEqual(skaffold.deploy.helm.releases.map((r) => r.chartPath).sort(), services.map((s) => `charts/${s}`).sort());
    const dev = skaffold.profiles.find((p) => p.name === "dev");
    assert.ok(dev, "no dev profile");
    assert.deepEqual(Object.fromEntries(dev.portForward.map((f) => [f.resourceName, f.port])), ports);
  });

  test("the Dockerfile builds any service by name, exposes its port and runs it as a non-root user", () => {
    const text = read(repo, "Dockerfile");
    // Images run the Node LTS that `make test-lts` proves the suite on, and package.json supports it.
    const lts = /^NODE_LTS := (\d+)\./m.exec(read(repo, "Makefile"))?.[1];
    assert.ok(lts, "Makefile names no NODE_LTS");
    assert.equal([...text.matchAll(/^FROM node:(\d+)-bookworm-slim/gm)].map((m) => m[1]).join(","), `${lts},${lts}`);
    const engines = (JSON.parse(read(repo, "package.json")) as { engines: { node: string } }).engines.node;
    assert.match(engines, new RegExp(`\\^${lts}\\.`), `engines.node (${engines}) does not include Node ${lts}`);
    assert.match(text, /^ARG SERVICE$/m);
    assert.match(text, /^EXPOSE \$\{PORT\}$/m);
    assert.match(text, /^USER (node|1000)(:\S+)?$/m);
    assert.ok(text.includes('CMD ["sh", "-c", "exec node services/$SERVICE/dist/main.js"]'));
  });

  test(".dockerignore keeps host builds out of the context", () => {
    const lines = read(repo, ".dockerignore").split("\n");
    for (const p of ["**/node_modules", "**/dist", ".data", ".git"]) assert.ok(lines.includes(p), `.dockerignore lacks ${p}`);
  });
});

describe("dashboards and alerts", () => {
  // What the services export (libs/platform/src/metrics.ts, each service's src/metrics.ts and
  // prom-client's default metrics), and what Prometheus and kube-state-metrics add about them.
  const metricFiles = ["libs/platform/src/metrics.ts", ...services.map((s) => `services/${s}/src/metrics.ts`)].filter((f) => existsSync(path.join(repo, f)));
  const exported = metricFiles.flatMap((f) => [...read(repo, f).matchAll(/name:\s*"([a-z_:]+)"/g)].map((m) => m[1]!));
  const histogramSeries = (n: string) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`];
  const known = new Set(exported.flatMap(histogramSeries));
  const infrastructure = new Set(["up", "kube_deployment_status_replicas_ready", "kube_deployment_spec_replicas", "kube_pod_container_status_restarts_total"]);
  const isKnown = (m: string) => known.has(m) || infrastructure.has(m) || /^(process|nodejs)_[a-z0-9_]+$/.test(m);

  const keywords = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "le", "inf", "nan"]);
  /** Metric names in a PromQL expression: identifiers that are not functions, keywords or label names. */
  function metricNames(expr: string): string[] {
    const stripped = expr
      .replace(/"(?:[^"\\]|\\.)*"/g, '""')
      .replace(/\{[^}]*\}/g, " ")
      .replace(/\[[^\]]*\]/g, " ")
      .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
      .replace(/\$\w+/g, " ");
    return [...stripped.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()/g)].map((m) => m[1]!).filter((n) => !keywords.has(n.toLowerCase()));
  }

  test("the platform's RED metrics are where the dashboards expect them", () => {
    assert.ok(exported.includes("http_requests_total"));
    assert.ok(exported.includes("http_request_duration_seconds"));
  });

  const dashboardFile = path.join(repo, "k8s/dashboards/opsplane-overview.json");
  const dashboard = JSON.parse(read(dashboardFile)) as {
    title: string;
    uid: string;
    templating: { list: Array<{ name: string; query: unknown }> };
    panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
  };

  test("the overview dashboard has a service variable and RED, process and readiness panels", () => {
    assert.equal(dashboard.title, "opsplane services overview");
    const service = dashboard.templating.list.find((v) => v.name === "service");
    assert.ok(service, "no service variable");
    assert.match(JSON.stringify(service.query), /label_values\(http_requests_total, service\)/);
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    assert.ok(exprs.some((e) => e.includes("http_request_duration_seconds_bucket") && e.includes("route")), "no latency per route");
    assert.ok(exprs.some((e) => e.includes("http_requests_total") && e.includes('status_code=~"5..')), "no error rate");
    assert.ok(exprs.some((e) => /nodejs_|process_/.test(e)), "no process metrics");
    assert.ok(exprs.some((e) => e.includes("kube_deployment_status_replicas_ready")), "no readiness");
    for (const e of exprs.filter((x) => x.includes("http_"))) assert.ok(e.includes('service=~"$service"'), `query ignores $service: ${e}`);
  });

  test("dashboard queries use only metrics the services export", () => {
    for (const p of dashboard.panels)
      for (const t of p.targets ?? []) {
        const unknown = metricNames(t.expr).filter((m) => !isKnown(m));
        assert.deepEqual(unknown, [], `panel "${p.title}": ${t.expr}`);
      }
  });

  test("the dashboard ConfigMap carries the same JSON, labelled for the Grafana sidecar", () => {
    const cm = parse(read(repo, "k8s/dashboards/configmap.yaml")) as { metadata: { labels: Values }; data: Record<string, string> };
    assert.equal(cm.metadata.labels.grafana_dashboard, "1");
    assert.equal(cm.data["opsplane-overview.json"], read(dashboardFile));
  });

  test("alert rules use only known metrics and cover errors, latency, targets and restarts", () => {
    const docs = parseAllDocuments(read(repo, "k8s/prometheus-rules.yaml")).map((d) => d.toJS()) as Array<{
      kind: string;
      spec: { groups: Array<{ rules: Array<{ alert?: string; expr: string }> }> };
    }>;
    const rules = docs.filter((d) => d.kind === "PrometheusRule").flatMap((d) => d.spec.groups.flatMap((g) => g.rules));
    for (const r of rules) assert.deepEqual(metricNames(r.expr).filter((m) => !isKnown(m)), [], `${r.alert}: ${r.expr}`);
    const alerts = rules.map((r) => r.alert);
    for (const a of ["OpsplaneHighErrorRatio", "OpsplaneHighLatencyP99", "OpsplaneTargetDown", "OpsplanePodRestarting"]) assert.ok(alerts.includes(a), `missing ${a}`);
  });

  test("the metric-name check catches a typo", () => {
    assert.deepEqual(metricNames('sum by (service) (rate(http_request_total{service=~"$service"}[5m]))').filter((m) => !isKnown(m)), ["http_request_total"]);
  });
});
