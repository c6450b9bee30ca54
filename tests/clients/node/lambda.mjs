// The AWS SDK for JavaScript v3 against stoke's Lambda API, unchanged but for the endpoint. The function
// named by $STOKE_FUNCTION (a Python echo: returns {"echo": event}) exists already.
import {
  LambdaClient, GetFunctionCommand, InvokeCommand, ListFunctionsCommand,
} from "@aws-sdk/client-lambda";

const client = new LambdaClient({
  endpoint: process.env.STOKE_ENDPOINT,
  region: "us-east-1",
  credentials: { accessKeyId: process.env.STOKE_AKID, secretAccessKey: process.env.STOKE_SECRET },
  maxAttempts: 1,
});
const name = process.env.STOKE_FUNCTION;
const check = (ok, what, seen) => {
  if (!ok) {
    console.error(`FAILED: ${what}: ${JSON.stringify(seen)}`);
    process.exit(1);
  }
};

const got = await client.send(new GetFunctionCommand({ FunctionName: name }));
check(got.Configuration.FunctionName === name && got.Configuration.Runtime === "python3.12", "GetFunction", got.Configuration);

const listed = await client.send(new ListFunctionsCommand({}));
check(listed.Functions.some((f) => f.FunctionName === name), "ListFunctions", listed.Functions);

const out = await client.send(new InvokeCommand({ FunctionName: name, Payload: Buffer.from(JSON.stringify({ n: 7 })) }));
const body = JSON.parse(Buffer.from(out.Payload).toString());
check(out.StatusCode === 200 && body.echo.n === 7 && out.FunctionError === undefined, "Invoke", { status: out.StatusCode, body });

const queued = await client.send(new InvokeCommand({ FunctionName: name, InvocationType: "Event", Payload: Buffer.from("{}") }));
check(queued.StatusCode === 202, "Invoke Event", queued.StatusCode);

try {
  await client.send(new GetFunctionCommand({ FunctionName: "no-such-function" }));
  check(false, "GetFunction of a missing function throws", "no error");
} catch (e) {
  check(e.name === "ResourceNotFoundException" && e.$metadata.httpStatusCode === 404, "the missing function's error", { name: e.name, status: e.$metadata?.httpStatusCode });
}
console.log("all checks passed");
