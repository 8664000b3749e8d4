-- wrk script: POST the JSON body in $BENCH_BODY to the target URL.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
