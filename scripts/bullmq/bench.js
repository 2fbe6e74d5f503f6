// BullMQ 5 on a Redis, as a plain job queue users compare Switchboard with: producers add jobs,
// one Worker (concurrency 64) processes each at once and completes it. Prints one JSON line:
// jobs added and completed, full cycles per second (add -> process -> complete), and the Redis
// time those cycles cost: INFO commandstats usec of every command (a script's commands count
// twice: in EVALSHA and on their own, so this overstates it) and Redis CPU (INFO cpu), over
// completed jobs.
//
//   node bench.js --redis redis://127.0.0.1:6379 --duration 15 --producers 32 --concurrency 64
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

function flag(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : fallback;
}

const url = new URL(flag('redis', 'redis://127.0.0.1:6379'));
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const duration = Number(flag('duration', '15')) * 1000;
const producers = Number(flag('producers', '32'));
const concurrency = Number(flag('concurrency', '64'));
const name = `bench-${process.pid}-${Date.now()}`;

async function commandUsec(admin) {
  const info = await admin.info('commandstats');
  let usec = 0;
  let calls = 0;
  for (const line of info.split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (!match || match[1] === 'info' || match[1].startsWith('config')) continue;
    calls += Number(match[2]);
    usec += Number(match[3]);
  }
  return { usec, calls };
}

async function redisCpu(admin) {
  const info = await admin.info('cpu');
  let seconds = 0;
  for (const line of info.split('\n')) {
    const match = /^used_cpu_(sys|user):([0-9.]+)/.exec(line);
    if (match) seconds += Number(match[2]);
  }
  return seconds;
}

async function main() {
  const admin = new IORedis(connection);
  const queue = new Queue(name, {
    connection,
    defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
  });
  let completed = 0;
  const worker = new Worker(name, async () => 1, { connection, concurrency, autorun: false });
  worker.on('completed', () => { completed += 1; });
  await queue.waitUntilReady();
  await admin.config('RESETSTAT');
  const before = await commandUsec(admin);
  const cpuBefore = await redisCpu(admin);
  worker.run();
  const started = Date.now();
  let added = 0;
  const deadline = started + duration;
  await Promise.all(Array.from({ length: producers }, async () => {
    while (Date.now() < deadline) {
      await queue.add('job', { n: added });
      added += 1;
    }
  }));
  const elapsed = (Date.now() - started) / 1000;
  const completedInTime = completed;
  const after = await commandUsec(admin);
  const cpuAfter = await redisCpu(admin);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await admin.quit();
  const usec = after.usec - before.usec;
  console.log(JSON.stringify({
    bullmq: require('bullmq/package.json').version,
    seconds: elapsed,
    added,
    completed: completedInTime,
    cycles_per_s: completedInTime / elapsed,
    redis_usec_per_cycle: usec / Math.max(completedInTime, 1),
    redis_calls_per_cycle: (after.calls - before.calls) / Math.max(completedInTime, 1),
    redis_cpu_us_per_cycle: ((cpuAfter - cpuBefore) * 1e6) / Math.max(completedInTime, 1),
  }));
}

main().catch((error) => { console.error(error); process.exit(1); });
