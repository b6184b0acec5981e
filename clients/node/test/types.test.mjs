// The public API's types: test/types/api.ts must compile against the built
// .d.ts, and each of its @ts-expect-error lines must be
// rejected (an unused directive is an error).  Also: the package packs, and
// the tarball installs and loads with import and require.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function typecheck(project) {
	try {
		execFileSync(process.execPath, [tsc, '-p', project], { cwd: ROOT, encoding: 'utf8' });
		return '';
	} catch (e) {
		return `${e.stdout}${e.stderr}`;
	}
}

test('the public API type-checks, and every @ts-expect-error line is rejected', () => {
	const out = typecheck('test/types/tsconfig.json');
	assert.equal(out, '', out);
	const expected = readFileSync(join(ROOT, 'test/types/api.ts'), 'utf8').match(/@ts-expect-error/g).length;
	assert.ok(expected >= 12, `${expected} rejected calls`);
});

test('removing one @ts-expect-error makes tsc fail (the check can fail)', () => {
	const src = readFileSync(join(ROOT, 'test/types/api.ts'), 'utf8');
	const tmp = join(ROOT, 'test/types/api.mutant.ts');
	writeFileSync(tmp, src.replace("// @ts-expect-error amounts are bigint or number, not strings\n", ''));
	const cfg = join(ROOT, 'test/types/tsconfig.mutant.json');
	writeFileSync(cfg, JSON.stringify({ extends: './tsconfig.json', files: ['api.mutant.ts'] }));
	try {
		const out = typecheck('test/types/tsconfig.mutant.json');
		assert.match(out, /TS2345/, out);
	} finally {
		rmSync(tmp, { force: true });
		rmSync(cfg, { force: true });
	}
});

test('npm pack gives a tarball that installs and loads as ESM and CJS', () => {
	const dir = mkdtempSync(join(tmpdir(), 'credits-client-pack-'));
	try {
		const name = execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir, '--loglevel=error'],
			{ cwd: ROOT, encoding: 'utf8' }).trim().split('\n').pop();
		const tarball = join(dir, name);
		const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
		for (const f of ['package/dist/esm/index.js', 'package/dist/esm/index.d.ts', 'package/dist/cjs/index.js', 'package/dist/cjs/index.d.ts', 'package/README.md'])
			assert.ok(files.includes(f), `${f} in the tarball`);
		assert.ok(!files.some((f) => f.includes('/test/') || f.includes('/src/')), 'no tests or sources');
		const app = join(dir, 'app');
		execFileSync('mkdir', ['-p', app]);
		writeFileSync(join(app, 'package.json'), '{"name":"app","private":true}');
		execFileSync('npm', ['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', tarball], { cwd: app });
		const esm = execFileSync(process.execPath, ['--input-type=module', '-e',
			"import { CreditsClient, InsufficientCreditsError } from '@credits/client'; console.log(typeof CreditsClient, typeof InsufficientCreditsError)"],
		{ cwd: app, encoding: 'utf8' });
		assert.equal(esm.trim(), 'function function');
		const cjs = execFileSync(process.execPath, ['-e',
			"const c = require('@credits/client'); console.log(typeof c.CreditsClient, typeof c.toHttpError)"],
		{ cwd: app, encoding: 'utf8' });
		assert.equal(cjs.trim(), 'function function');
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
});
