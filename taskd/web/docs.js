// /docs: Swagger UI on taskd's own OpenAPI description. Everything it loads comes from
// this server (the CSP allows nothing else); "Try it out" sends real requests, with the
// dashboard's token of this tab when there is one (the Authorize button sets another).

const TOKEN_KEY = "taskd.token"; // the dashboard's key (api.js)

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

const token = storedToken();

window.SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // the default would ask an outside validator service
  requestInterceptor: (request) => {
    if (token && !request.headers.Authorization) request.headers.Authorization = `Bearer ${token}`;
    return request;
  },
});
