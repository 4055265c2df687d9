// The API reference at /docs: Swagger UI (from npm, embedded) reading
// bothy's own /openapi.json. "Authorize" takes an API key; "Try it out"
// then calls this server with it.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#api",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
