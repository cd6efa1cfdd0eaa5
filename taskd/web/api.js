// The REST client: JSON in and out, the bearer token, errors as ApiError.
//
// The token lives in sessionStorage: it survives reloads of this tab (and the shareable
// #/tasks/<id> URLs opened in it) but not the browser session, and other sites cannot
// read it. A 401 anywhere raises the "taskd:unauthorized" event, which opens the login.

const TOKEN_KEY = "taskd.token";

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server could not be reached)
   * @param {{code?: string, message?: string, details?: any}} error the API's error object
   */
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.details = error.details || null;
  }

  /** The field a 422 names ("payload.recipient", "priority", ...), if any. */
  get field() {
    return this.details && typeof this.details.field === "string" ? this.details.field : null;
  }
}

/** @returns {string|null} */
export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** @param {string|null} value */
export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token then lasts as long as nothing; the login reappears.
  }
}

/**
 * Call the API.
 * @param {string} path e.g. "/api/tasks?limit=100"
 * @param {{method?: string, body?: any, signal?: AbortSignal, quiet401?: boolean}} [options]
 * @returns {Promise<any>} the parsed JSON body (null for 204)
 */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let body;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  let reply;
  try {
    reply = await fetch(path, {
      method: options.method || "GET",
      headers,
      body,
      signal: options.signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { code: "unreachable", message: "the server cannot be reached" });
  }
  if (reply.status === 204) return null;
  let data = null;
  try {
    data = await reply.json();
  } catch {
    data = null;
  }
  if (!reply.ok) {
    const error = new ApiError(reply.status, (data && data.error) || {});
    if (reply.status === 401 && !options.quiet401) {
      window.dispatchEvent(new CustomEvent("taskd:unauthorized"));
    }
    throw error;
  }
  return data;
}

/**
 * The WebSocket URL, resuming after `since` when given.
 * @param {string|null} since
 */
export function socketUrl(since) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams();
  if (since) params.set("since", since);
  const t = token();
  if (t) params.set("token", t);
  const query = params.toString();
  return `${scheme}//${location.host}/ws${query ? `?${query}` : ""}`;
}

/**
 * The equivalent curl command for submitting a task again (the token stays a variable).
 * @param {Record<string, any>} task
 */
export function curlFor(task) {
  const body = {
    name: task.name,
    task_type: task.task_type,
    queue: task.queue,
    priority: task.priority,
    max_retries: task.max_retries,
    timeout_s: task.timeout_s,
    payload: task.payload || {},
  };
  const json = JSON.stringify(body).replaceAll("'", "'\\''");
  const auth = token() ? ` \\\n  -H "Authorization: Bearer $TASKD_TOKEN"` : "";
  return `curl -X POST '${location.origin}/api/tasks' \\\n  -H 'Content-Type: application/json'${auth} \\\n  -d '${json}'`;
}
