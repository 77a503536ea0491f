// Prints the Khronos glTF validator's JSON report for one file (or stdin when the path is "-").
// Used by nodes/export/validator.py; install with `npm ci --prefix tools/gltf-validator`.
import fs from 'node:fs';
import path from 'node:path';
import validator from 'gltf-validator';

const target = process.argv[2];
if (!target) {
    console.error('usage: node validate.mjs FILE.glb|FILE.gltf|-');
    process.exit(2);
}
const bytes = target === '-' ? fs.readFileSync(0) : fs.readFileSync(target);
const baseDir = target === '-' ? process.cwd() : path.dirname(path.resolve(target));

try {
    const report = await validator.validateBytes(new Uint8Array(bytes), {
        uri: target === '-' ? 'stdin.glb' : path.basename(target),
        maxIssues: 1000,
        externalResourceFunction: (uri) => new Promise((resolve, reject) => {
            fs.readFile(path.resolve(baseDir, decodeURIComponent(uri)), (err, data) => {
                if (err) reject(err.toString()); else resolve(new Uint8Array(data));
            });
        }),
    });
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
} catch (error) {
    console.error('validation failed: ' + error);
    process.exit(1);
}
