import { packageVersion, type ServiceDefinition } from "@opsplane/platform";

/** The operations API: app and middleware control, test-data construction. */
export const definition: ServiceDefinition = {
  name: "control-center",
  version: packageVersion(__dirname),
  defaultPort: 8084,
  setup: () => ({}),
};
