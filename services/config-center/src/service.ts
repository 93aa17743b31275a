import { packageVersion, type ServiceDefinition } from "@opsplane/platform";

/** App registration, parameters, resources and governance rules, pushed live. */
export const definition: ServiceDefinition = {
  name: "config-center",
  version: packageVersion(__dirname),
  defaultPort: 8083,
  setup: () => ({}),
};
