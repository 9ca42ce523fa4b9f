<?php
// Writes tests/fixtures/laravel/ (or the directory given): tokens minted the way Laravel
// Sanctum and Passport mint them, with PHP's own hash(), random_int() and openssl_sign(),
// so that the Rust tests read what PHP wrote rather than what we believe it writes.
//
//   php scripts/laravel-fixtures.php            # rewrites tests/fixtures/laravel/
//   php scripts/laravel-fixtures.php DIR        # fresh ones in DIR; then
//   TOWER_PAT_LARAVEL_FIXTURES=DIR cargo test --all-features --test it laravel::
//
// CI does the latter, so every run also checks tokens PHP minted that very minute.
// Needs only php-cli (Debian: apt-get install php-cli); Laravel itself is not needed:
// the few lines of Sanctum and Passport that shape a token are restated below.

$dir = $argv[1] ?? __DIR__ . '/../tests/fixtures/laravel';
@mkdir($dir, 0755, true);

function random_string(int $length): string {
    // Str::random: letters and digits.
    $pool = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    $out = '';
    for ($i = 0; $i < $length; $i++) {
        $out .= $pool[random_int(0, strlen($pool) - 1)];
    }
    return $out;
}

function b64url(string $bytes): string {
    return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
}

// ---- Sanctum: one row per generation, all in one table, as an old install holds them.
$sanctum = [];
$id = 1;
$add = function (string $generation, ?int $id, string $plain, array $abilities, ?string $expires = null)
    use (&$sanctum) {
    // The `token` column: SHA-256 of what follows the first `|` (or of all of it).
    $sanctum[] = [
        'generation' => $generation,
        'id' => $id,
        'bearer' => $id === null ? $plain : "$id|$plain",
        'token' => hash('sha256', $plain),
        'abilities' => json_encode($abilities),
        'expires_at' => $expires,
    ];
};
$r = random_string(80);
$add('2.2 bare', null, $r, ['*']);
$add('2.3 id|80', 2, random_string(80), ['orders:read']);
$add('2.6 id|40', 3, random_string(40), ['orders:read', 'orders:create']);
$r = random_string(40);
// 3.2.6 only: a default prefix and hash('crc32'), the BZIP2 CRC, not crc32b.
$add('3.2.6 prefix+crc32', 4, 'laravel_sanctum_' . $r . hash('crc32', $r), ['*']);
$r = random_string(40);
$add('3.3 crc32b', 5, $r . hash('crc32b', $r), ['orders:read']);
$r = random_string(40);
$add('3.3 bad crc32b', 6, $r . '00000000', ['orders:read']);
$r = random_string(40);
$add('3.3 expired', 7, $r . hash('crc32b', $r), ['*'], '2001-01-01 00:00:00');
$r = random_string(40);
$add('3.3 other owner type', 8, $r . hash('crc32b', $r), ['*']);
$r = random_string(40);
$add('4.0 prefix', 9, 'myapp_' . $r . hash('crc32b', 'myapp_' . $r), ['orders:read']);

file_put_contents("$dir/sanctum.json", json_encode($sanctum, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n");

// ---- Passport: an RSA key as `passport:keys` makes (2048 bits here, to keep the file
// small; Passport's default is 4096), and personal access tokens signed with it.
$key = openssl_pkey_new(['private_key_bits' => 2048, 'private_key_type' => OPENSSL_KEYTYPE_RSA]);
$public = openssl_pkey_get_details($key)['key'];
file_put_contents("$dir/oauth-public.key", $public);

function jwt($key, array $claims, string $alg = 'RS256', ?string $hmac = null, bool $stringDates = false): string {
    $header = b64url(json_encode(['typ' => 'JWT', 'alg' => $alg]));
    // lcobucci/jwt writes dates as floats with microseconds, integers when they are 0;
    // 4.0.x wrote them as numeric strings.
    $json = json_encode($claims);
    if (!$stringDates) {
        $json = preg_replace('/"(iat|nbf|exp)":"(-?[0-9.]+)"/', '"$1":$2', $json);
    }
    $payload = b64url($json);
    $signed = "$header.$payload";
    if ($alg === 'RS256') {
        openssl_sign($signed, $sig, $key, OPENSSL_ALGO_SHA256);
    } elseif ($alg === 'RS256 other key') {
        $header = b64url(json_encode(['typ' => 'JWT', 'alg' => 'RS256']));
        $signed = "$header.$payload";
        $other = openssl_pkey_new(['private_key_bits' => 2048, 'private_key_type' => OPENSSL_KEYTYPE_RSA]);
        openssl_sign($signed, $sig, $other, OPENSSL_ALGO_SHA256);
    } elseif ($alg === 'HS256') {
        $sig = hash_hmac('sha256', $signed, $hmac, true);
    } else {
        $sig = '';
    }
    return "$signed." . b64url($sig);
}

$iat = '1767225600.123456'; // 2026-01-01T00:00:00.123456Z
$exp = '2114380800.123456'; // 2037-01-01T00:00:00.123456Z
$passport = [];
$mint = function (string $case, array $override = [], string $alg = 'RS256', bool $stringDates = false) use ($key, $public, $iat, $exp, &$passport) {
    $jti = bin2hex(random_bytes(40)); // 13.x: 80 lowercase hex
    $claims = array_merge([
        'aud' => 'personal-client',
        'jti' => $jti,
        'iat' => $iat,
        'nbf' => $iat,
        'exp' => $exp,
        'sub' => '42',
        'scopes' => ['orders:read'],
    ], $override);
    $passport[] = [
        'case' => $case,
        'jti' => $claims['jti'],
        'bearer' => jwt($key, $claims, $alg, $public, $stringDates),
    ];
};
$mint('valid');
$mint('valid, all scopes', ['scopes' => ['*']]);
$mint('integer dates', ['iat' => 1767225600, 'nbf' => 1767225600, 'exp' => 2114380800]);
$mint('numeric string dates', ['iat' => '1767225600', 'nbf' => '1767225600', 'exp' => '2114380800'], 'RS256', true);
$mint('revoked row');
$mint('no row');
$mint('sub is not the row user', ['sub' => '43']);
$mint('client revoked', ['aud' => 'revoked-client']);
$mint('not a personal access client', ['aud' => 'password-client']);
$mint('HS256 with the public key', [], 'HS256');
$mint('alg none', [], 'none');
$mint('expired', ['exp' => '1767225601.5']);
$mint('signed by another key', [], 'RS256 other key');
// A client credentials token: no user (`sub` empty), the row's `user_id` NULL.
$mint('client credentials', ['sub' => '']);
file_put_contents("$dir/passport.json", json_encode($passport, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n");
echo "wrote $dir/{sanctum.json,passport.json,oauth-public.key}\n";
