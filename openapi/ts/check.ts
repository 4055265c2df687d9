// Compiled against the types openapi-typescript generates from bothy's
// OpenAPI document (openapi/ts_test.go): a TypeScript user's calls type-check,
// and a wrong one does not.
import type { components, paths } from "./api";

type JSONBody<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  requestBody: { content: { "application/json": infer B } };
}
  ? B
  : never;

type Sandbox = components["schemas"]["Sandbox"];
type CreateSandbox = JSONBody<"/v1/sandboxes", "post">;
type Created = paths["/v1/sandboxes"]["post"]["responses"][201]["content"]["application/json"];
type ExecBody = JSONBody<"/v1/sandboxes/{id}/exec", "post">;
type ExecResult = paths["/v1/sandboxes/{id}/exec"]["post"]["responses"][200]["content"]["application/json"];
type Failure = components["schemas"]["ErrorEnvelope"];
type ListQuery = NonNullable<paths["/v1/sandboxes"]["get"]["parameters"]["query"]>;

const create: CreateSandbox = { image: "bothy/base", memory_mb: 512, labels: { team: "a" }, idle_timeout_s: 600 };
const exec: ExecBody = { cmd: ["python3", "-c", "print(6*7)"], timeout_ms: 5000 };
const query: ListQuery = { label: ["team=a"], state: "running", limit: 10 };

function describe(s: Created | Sandbox): string {
  const expires: string | undefined = s.expires_at;
  return `${s.id} ${s.state} ${s.memory_mb} MiB ${Object.keys(s.labels).join(",")} ${expires ?? "never"}`;
}

function output(r: ExecResult): string {
  return r.exit_code === 0 ? r.stdout : `${r.signal ?? ""} ${r.stderr}`;
}

function message(f: Failure): string {
  return `${f.error.code}: ${f.error.message} (${f.error.request_id ?? "-"})`;
}

// @ts-expect-error memory_mb is a number
const wrong: CreateSandbox = { memory_mb: "lots" };

export { create, exec, query, describe, output, message, wrong };
