/** The six deployables, their ports (ARCHITECTURE.md) and where their entry points are. */
export const services = [
  { name: "assist-relay", port: 8081 },
  { name: "errcode-scanner", port: 8082 },
  { name: "config-center", port: 8083 },
  { name: "control-center", port: 8084 },
  { name: "monitor-center", port: 8085 },
  { name: "callback-dispatcher", port: 8086 },
] as const;

export const mainOf = (name: string) => `services/${name}/dist/main.js`;
