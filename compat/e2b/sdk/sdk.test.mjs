// E2B's own SDK, unchanged, against bothy: the agent session a user of
// E2B runs, pointed at bothy by E2B_API_URL, E2B_SANDBOX_URL and
// E2B_API_KEY alone (e2e/e2b_test.go starts bothyd and runs this file with
// node --test).
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import {
  Sandbox, CommandExitError, FileNotFoundError, SandboxNotFoundError, NotFoundError, FilesystemEventType,
} from 'e2b'

const run = `run-${randomBytes(4).toString('hex')}`
const made = []
after(async () => {
  for (const id of made) await Sandbox.kill(id).catch(() => {})
})

// waitFor polls cond, bounded, until it holds.
async function waitFor(what, cond, ms = 30000) {
  const end = Date.now() + ms
  for (;;) {
    if (await cond()) return
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

let sandbox
test('create with metadata and envs', async () => {
  sandbox = await Sandbox.create('base', { metadata: { run, purpose: 'agent session & test/1' }, envs: { MY_ENV: 'from-create' }, timeoutMs: 600_000 })
  made.push(sandbox.sandboxId)
  assert.match(sandbox.sandboxId, /^sb-/)
  assert.equal(await sandbox.isRunning(), true)
})

test('commands: foreground, exit codes, cwd, envs, user, streaming, timeouts', async () => {
  const r = await sandbox.commands.run('echo $MY_ENV; whoami; pwd')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'from-create\nuser\n/home/user\n')

  await assert.rejects(sandbox.commands.run('echo partial; echo oops >&2; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, String(e))
    assert.equal(e.exitCode, 3)
    assert.equal(e.stdout, 'partial\n')
    assert.equal(e.stderr, 'oops\n')
    return true
  })

  const env = await sandbox.commands.run('pwd; echo $A $MY_ENV', { cwd: '/tmp', envs: { A: 'from-run', MY_ENV: 'overridden' } })
  assert.equal(env.stdout, '/tmp\nfrom-run overridden\n')
  assert.equal((await sandbox.commands.run('whoami', { user: 'root' })).stdout, 'root\n')

  const seen = []
  const streamed = await sandbox.commands.run('for i in 1 2 3; do echo line-$i; done; echo err >&2', {
    onStdout: (d) => seen.push(['out', d]), onStderr: (d) => seen.push(['err', d]),
  })
  assert.equal(streamed.stdout, 'line-1\nline-2\nline-3\n')
  assert.ok(seen.some(([k, d]) => k === 'out' && d.includes('line-1')))
  assert.ok(seen.some(([k, d]) => k === 'err' && d.includes('err')))

  const started = Date.now()
  await assert.rejects(sandbox.commands.run('sleep 30', { timeoutMs: 1500 }))
  assert.ok(Date.now() - started < 25000, 'the timeout ended the command')
  // The deadline killed the command in the sandbox too.
  await waitFor('the timed-out sleep to go', async () => (await sandbox.commands.list()).every((p) => !(p.args || []).join(' ').includes('sleep 30')))
})

test('commands: background, list, connect, stdin, kill', async () => {
  const h = await sandbox.commands.run('for i in $(seq 1 1000); do echo tick-$i; sleep 0.05; done', { background: true })
  assert.ok(h.pid > 0)
  await waitFor('output from the background command', () => h.stdout.includes('tick-2'))
  const list = await sandbox.commands.list()
  assert.ok(list.some((p) => p.pid === h.pid), JSON.stringify(list))
  await h.disconnect()

  // Another connection to the same command sees its live output.
  const again = await sandbox.commands.connect(h.pid)
  let more = ''
  const again2 = await sandbox.commands.connect(h.pid, { onStdout: (d) => { more += d } })
  await waitFor('live output after connect', () => /tick-\d+/.test(more))
  assert.equal(await sandbox.commands.kill(h.pid), true)
  await assert.rejects(again.wait(), (e) => e instanceof CommandExitError)
  await assert.rejects(again2.wait())
  assert.equal(await sandbox.commands.kill(h.pid), false, 'a second kill finds nothing')

  const cat = await sandbox.commands.run('cat', { background: true, stdin: true })
  await sandbox.commands.sendStdin(cat.pid, 'hello stdin\n')
  await waitFor('cat to echo', () => cat.stdout.includes('hello stdin'))
  await sandbox.commands.closeStdin(cat.pid)
  const done = await cat.wait()
  assert.equal(done.exitCode, 0)
  assert.equal(done.stdout, 'hello stdin\n')
})

test('files: text, bytes, upload, list, exists, info, rename, remove, errors', async () => {
  const info = await sandbox.files.write('notes/hello.txt', 'hello world')
  assert.equal(info.path, '/home/user/notes/hello.txt')
  assert.equal(await sandbox.files.read('notes/hello.txt'), 'hello world')

  const bytes = new Uint8Array(randomBytes(1 << 20))
  await sandbox.files.write('/tmp/blob.bin', bytes)
  const back = await sandbox.files.read('/tmp/blob.bin', { format: 'bytes' })
  assert.equal(back.length, bytes.length)
  assert.ok(Buffer.from(back).equals(Buffer.from(bytes)))
  assert.equal((await sandbox.commands.run('sha256sum /tmp/blob.bin | cut -c1-64')).stdout.trim(),
    (await import('node:crypto')).createHash('sha256').update(bytes).digest('hex'))

  // Several files in one multipart upload.
  const many = await sandbox.files.write([
    { path: 'multi/a.txt', data: 'A' },
    { path: 'multi/sub/b.txt', data: 'B' },
  ])
  assert.equal(many.length, 2)
  assert.equal(await sandbox.files.read('multi/sub/b.txt'), 'B')

  const top = await sandbox.files.list('multi')
  assert.deepEqual(top.map((e) => e.name).sort(), ['a.txt', 'sub'])
  const deep = await sandbox.files.list('multi', { depth: 2 })
  assert.ok(deep.some((e) => e.path === '/home/user/multi/sub/b.txt'), JSON.stringify(deep))
  assert.equal(deep.find((e) => e.name === 'sub').type, 'dir')

  assert.equal(await sandbox.files.exists('multi/a.txt'), true)
  assert.equal(await sandbox.files.exists('multi/nope.txt'), false)
  const st = await sandbox.files.getInfo('multi/a.txt')
  assert.equal(st.type, 'file')
  assert.equal(st.size, 1)
  assert.equal(st.permissions, '-rw-r--r--')
  assert.equal(st.owner, 'user')
  assert.equal(st.group, 'user')
  await sandbox.files.write('/tmp/as-root.txt', 'r', { user: 'root' })
  const asRoot = await sandbox.files.getInfo('/tmp/as-root.txt', { user: 'root' })
  assert.equal(asRoot.owner, 'root')
  assert.equal(asRoot.group, 'root')

  assert.equal(await sandbox.files.makeDir('made/deeper'), true)
  assert.equal(await sandbox.files.makeDir('made/deeper'), false)
  const moved = await sandbox.files.rename('multi/a.txt', 'made/a2.txt')
  assert.equal(moved.path, '/home/user/made/a2.txt')
  assert.equal(await sandbox.files.exists('multi/a.txt'), false)
  await sandbox.files.remove('made')
  assert.equal(await sandbox.files.exists('made'), false)
  await sandbox.files.remove('made') // not there: fine

  await assert.rejects(sandbox.files.read('missing.txt'), (e) => e instanceof FileNotFoundError)
  await assert.rejects(sandbox.files.getInfo('missing.txt'), (e) => e instanceof FileNotFoundError)
  await assert.rejects(sandbox.files.list('missing-dir'), (e) => e instanceof NotFoundError)
})

test('files: watchDir, recursive', async () => {
  await sandbox.files.makeDir('watched/nested')
  const events = []
  const w = await sandbox.files.watchDir('watched', (e) => { events.push(e) }, { recursive: true })
  await sandbox.files.write('watched/w1.txt', 'one')
  await sandbox.files.write('watched/nested/deep.txt', 'two')
  await sandbox.files.remove('watched/w1.txt')
  await waitFor('watch events', () =>
    events.some((e) => e.name === 'nested/deep.txt') && events.some((e) => e.name === 'w1.txt' && e.type === FilesystemEventType.REMOVE))
  assert.ok(events.some((e) => e.name === 'w1.txt' && (e.type === FilesystemEventType.CREATE || e.type === FilesystemEventType.WRITE)))
  await w.stop()
})

test('pty: output, input, resize, kill', async () => {
  let screen = ''
  const dec = new TextDecoder()
  const term = await sandbox.pty.create({ cols: 80, rows: 24, onData: (d) => { screen += dec.decode(d, { stream: true }) }, timeoutMs: 0 })
  assert.ok(term.pid > 0)
  const enc = new TextEncoder()
  await sandbox.pty.sendInput(term.pid, enc.encode('echo pty-$((6*7))\n'))
  await waitFor('the shell to answer in the terminal', () => screen.includes('pty-42'))
  await sandbox.pty.resize(term.pid, { cols: 100, rows: 30 })
  await sandbox.pty.sendInput(term.pid, enc.encode('stty size\n'))
  await waitFor('the new size', () => screen.includes('30 100'))
  assert.ok((await sandbox.commands.list()).some((p) => p.pid === term.pid))
  assert.equal(await sandbox.pty.kill(term.pid), true)
  await assert.rejects(term.wait())
  assert.equal(await sandbox.pty.kill(term.pid), false)
})

test('lifecycle: setTimeout, getInfo, list by metadata, a second client, pause and resume, kill twice', async () => {
  await sandbox.setTimeout(900_000)
  const info = await sandbox.getInfo()
  assert.equal(info.sandboxId, sandbox.sandboxId)
  assert.equal(info.state, 'running')
  assert.equal(info.metadata.run, run)
  assert.ok(info.endAt.getTime() - Date.now() > 800_000, `endAt ${info.endAt}`)

  const other = await Sandbox.create('base', { metadata: { run: `${run}-other` } })
  made.push(other.sandboxId)
  const p = Sandbox.list({ query: { metadata: { run, purpose: 'agent session & test/1' } } })
  const found = []
  while (p.hasNext) found.push(...await p.nextItems())
  assert.deepEqual(found.map((s) => s.sandboxId), [sandbox.sandboxId])

  const metrics = await sandbox.getMetrics()
  assert.equal(metrics.length, 1, JSON.stringify(metrics))
  assert.ok(metrics[0].memUsed > 0 && metrics[0].memTotal >= metrics[0].memUsed && metrics[0].cpuCount > 0, JSON.stringify(metrics))
  assert.ok(metrics[0].cpuUsedPct >= 0 && metrics[0].timestamp instanceof Date, JSON.stringify(metrics))

  // A second client, by ID alone, reaches the same sandbox and its files.
  const second = await Sandbox.connect(sandbox.sandboxId)
  assert.equal(await second.files.read('notes/hello.txt'), 'hello world')

  assert.equal(await sandbox.pause(), true)
  assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).state, 'paused')
  assert.equal(await Sandbox.pause(sandbox.sandboxId), false, 'pausing a paused sandbox')
  const resumed = await Sandbox.connect(sandbox.sandboxId)
  assert.equal((await resumed.commands.run('cat notes/hello.txt')).stdout, 'hello world')

  assert.equal(await other.kill(), true)
  assert.equal(await other.kill(), false)
  assert.equal(await Sandbox.kill(other.sandboxId), false)
  await assert.rejects(Sandbox.connect(other.sandboxId), (e) => e instanceof SandboxNotFoundError)
  assert.equal(await other.isRunning(), false)
  await assert.rejects(other.commands.run('true'), (e) => e instanceof SandboxNotFoundError)
})
