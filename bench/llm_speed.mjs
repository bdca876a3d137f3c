// llama.cpp's speed on a GGUF, through node-llama-cpp's prebuilt CPU binding: the peer of
// ibex's embedded LLM in bench/llm_speed.sh. Prints one JSON line.
// Usage: node llm_speed.mjs MODEL.gguf THREADS PROMPT_FILE MAX_TOKENS
import {getLlama} from "node-llama-cpp";
import {readFileSync} from "node:fs";

const [modelPath, threads, promptFile, maxTokens] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never"});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: 2048, threads: Number(threads)});
const prompt = readFileSync(promptFile, "utf8");
// The same ChatML prompt ibex builds; special tokens parsed as such.
const tokens = model.tokenize(prompt, true);
const rounds = [];
for (let round = 0; round < 2; round++) {
  const sequence = context.getSequence();
  const start = performance.now();
  let first = null;
  let generated = 0;
  for await (const token of sequence.evaluate(tokens, {temperature: 0})) {
    if (first === null) first = performance.now();
    generated++;
    if (generated >= Number(maxTokens) || model.isSpecialToken?.(token)) break;
  }
  const end = performance.now();
  rounds.push({
    prompt_tokens: tokens.length,
    prefill_s: (first - start) / 1000,
    decode_tokens: generated - 1,
    decode_s: (end - first) / 1000,
  });
  sequence.dispose();
}
console.log(JSON.stringify(rounds[rounds.length - 1]));
