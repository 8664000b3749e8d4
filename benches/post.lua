-- wrk script: POST the JSON body in $BENCH_BODY to the target URL, with $BENCH_AUTH (if set) as
-- the Authorization header.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["authorization"] = auth
end
