import { packageVersion, type ServiceDefinition } from "@opsplane/platform";

/** Self-test reports, dial tests, saturation/availability/health indices, alerts. */
export const definition: ServiceDefinition = {
  name: "monitor-center",
  version: packageVersion(__dirname),
  defaultPort: 8085,
  setup: () => ({}),
};
