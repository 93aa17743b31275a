// Tracing first: it must wrap http, pg and the rest before they load.
import "@opsplane/platform/otel";
import { runMain } from "@opsplane/platform";
import { definition } from "./service.js";

runMain(definition);
