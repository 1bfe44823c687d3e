#!/usr/bin/env node
// Rebuilds Relai's seed-data CSVs from the npm package @etalab/decoupage-administratif
// (COG of the year, published by Etalab under Licence Ouverte 2.0).
//
//   node refresh.mjs [--out DIR] [--previous FILE] [--centroids FILE] [--data DIR]
//
//   --out DIR         where to write communes.csv, postcodes.csv,
//                     postcodes_arrondissements.csv, departements.csv
//                     (default: the seed-data folder, i.e. the parent of this script's folder)
//   --previous FILE   the current communes.csv, whose lat/lon/centroid_source are kept for
//                     every INSEE code that still exists (default: <seed-data>/communes.csv)
//   --centroids FILE  optional CSV `insee_code,lat,lon` (e.g. computed from IGN ADMIN EXPRESS,
//                     see ../README.md); its rows override/fill the centroids and get
//                     centroid_source=admin-express
//   --data DIR        the package's data/ folder (default: resolved from node_modules)
//
// Output format (must stay byte-identical to what the Rust crate and its tests expect):
// UTF-8 without BOM, CRLF line ends (also after the last row), a field is quoted only when it
// holds a comma, a double quote, CR or LF (RFC 4180), rows sorted by code with a plain
// byte-wise (C locale) comparison.
//
// Report on stderr: package version, row counts, communes that are new (no centroid yet),
// communes that disappeared, and renamed communes. Exit code 1 on any consistency error
// (unknown région in the zone table, duplicate code, missing département...).

import {readFileSync, writeFileSync, existsSync, mkdirSync, renameSync} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const seedData = path.resolve(here, '..')

// ---------------------------------------------------------------------------------------------
// Zones de défense et de sécurité, by région code. The npm package does not carry them.
// Metropolitan zones: décret n° 2015-1625 du 10 décembre 2015 (zones map to the 2016 régions;
// Code de la défense R1211-4). Overseas zones: Code de la défense R1211-7 and R1211-8.
// Overseas collectivités have région code == their own code in the package, so one table
// keyed by région code covers everything. '' = belongs to no zone (975, 989).
// A région absent from this table stops the refresh: add it here on purpose.
// ---------------------------------------------------------------------------------------------
const ZONE_DEFENSE_BY_REGION = {
  11: 'Paris', // Île-de-France
  24: 'Ouest', // Centre-Val de Loire
  27: 'Est', // Bourgogne-Franche-Comté
  28: 'Ouest', // Normandie
  32: 'Nord', // Hauts-de-France
  44: 'Est', // Grand Est
  52: 'Ouest', // Pays de la Loire
  53: 'Ouest', // Bretagne
  75: 'Sud-Ouest', // Nouvelle-Aquitaine
  76: 'Sud', // Occitanie
  84: 'Sud-Est', // Auvergne-Rhône-Alpes
  93: 'Sud', // Provence-Alpes-Côte d'Azur
  94: 'Sud', // Corse
  '01': 'Antilles', // Guadeloupe (971)
  '02': 'Antilles', // Martinique (972)
  '03': 'Guyane', // Guyane (973)
  '04': "Sud de l'océan Indien", // La Réunion (974)
  '06': "Sud de l'océan Indien", // Mayotte (976)
  975: '', // Saint-Pierre-et-Miquelon: no zone
  977: 'Antilles', // Saint-Barthélemy
  978: 'Antilles', // Saint-Martin
  984: "Sud de l'océan Indien", // Terres australes et antarctiques françaises
  986: 'Nouvelle-Calédonie', // Wallis et Futuna
  987: 'Polynésie française', // Polynésie française
  988: 'Nouvelle-Calédonie', // Nouvelle-Calédonie
  989: '', // Île de Clipperton: no zone
}

const COMMUNE_TYPES = {
  'commune-actuelle': 'commune',
  'arrondissement-municipal': 'arrondissement_municipal',
}
// commune-deleguee and commune-associee are not emitted: they are not current communes, and
// 584 of them share their INSEE code with the commune nouvelle that absorbed them.

const HEADERS = {
  communes: ['insee_code', 'name', 'type', 'parent_code', 'departement_code', 'region_code',
    'zone', 'population', 'lat', 'lon', 'centroid_source'],
  postcodes: ['postcode', 'insee_code'],
  departements: ['code', 'name', 'region', 'region_name', 'zone_defense', 'kind', 'chef_lieu'],
}

// ---------------------------------------------------------------------------------------------
function parseArgs(argv) {
  const opts = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const m = /^--(out|previous|centroids|data)(?:=(.*))?$/.exec(a)
    if (!m) fail(`unknown argument: ${a}`)
    opts[m[1]] = m[2] ?? argv[++i]
    if (opts[m[1]] === undefined) fail(`missing value for --${m[1]}`)
  }
  return opts
}

function fail(msg) {
  console.error(`refresh: ERROR: ${msg}`)
  process.exit(1)
}

const warn = msg => console.error(`refresh: ${msg}`)

// Byte-wise comparison (C locale): codes are ASCII, so UTF-16 order == byte order.
const cmp = (a, b) => (a < b ? -1 : (a > b ? 1 : 0))

function csvField(v) {
  const s = v === undefined || v === null ? '' : String(v)
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

function csvText(header, rows) {
  return [header, ...rows].map(r => r.map(csvField).join(',') + '\r\n').join('')
}

// Minimal RFC 4180 parser (quoted fields, "" escapes, CRLF or LF).
function parseCsv(text) {
  if (text.charCodeAt(0) === 0xFEFF) text = text.slice(1)
  const rows = []
  let row = []
  let field = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"'
          i++
        } else {
          quoted = false
        }
      } else {
        field += ch
      }
    } else if (ch === '"') {
      quoted = true
    } else if (ch === ',') {
      row.push(field)
      field = ''
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++
      row.push(field)
      rows.push(row)
      row = []
      field = ''
    } else {
      field += ch
    }
  }
  if (field !== '' || row.length > 0) {
    row.push(field)
    rows.push(row)
  }
  return rows
}

function readCsvObjects(file) {
  const [header, ...rows] = parseCsv(readFileSync(file, 'utf8'))
  return {header, rows: rows.map(r => Object.fromEntries(header.map((h, i) => [h, r[i] ?? ''])))}
}

function writeAtomic(file, text) {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, text, 'utf8')
  renameSync(tmp, file)
}

// ---------------------------------------------------------------------------------------------
const opts = parseArgs(process.argv.slice(2))
const outDir = path.resolve(opts.out ?? seedData)
const previousFile = path.resolve(opts.previous ?? path.join(seedData, 'communes.csv'))

let dataDir = opts.data
let pkgVersion = '(unknown, --data given)'
if (!dataDir) {
  const require = createRequire(path.join(here, 'package.json'))
  let pkgJson
  try {
    pkgJson = require.resolve('@etalab/decoupage-administratif/package.json')
  } catch {
    fail('@etalab/decoupage-administratif is not installed: run `npm install` in seed-data/refresh (or use refresh.sh)')
  }
  pkgVersion = JSON.parse(readFileSync(pkgJson, 'utf8')).version
  const pinned = JSON.parse(readFileSync(path.join(here, 'package.json'), 'utf8'))
    .dependencies['@etalab/decoupage-administratif']
  if (pinned !== pkgVersion) {
    fail(`installed @etalab/decoupage-administratif ${pkgVersion} != pinned ${pinned}: run \`npm install\` again`)
  }
  dataDir = path.join(path.dirname(pkgJson), 'data')
}
dataDir = path.resolve(dataDir)
warn(`@etalab/decoupage-administratif ${pkgVersion} from ${dataDir}`)

const load = name => JSON.parse(readFileSync(path.join(dataDir, `${name}.json`), 'utf8'))
const communesJson = load('communes')
const departementsJson = load('departements')
const regionsJson = load('regions')

// --- régions and départements ----------------------------------------------------------------
const regionName = new Map()
for (const r of regionsJson) regionName.set(r.code, r.nom)

const departementCodes = new Set()
const departementRows = []
for (const d of departementsJson) {
  if (departementCodes.has(d.code)) fail(`duplicate département ${d.code}`)
  departementCodes.add(d.code)
  if (!regionName.has(d.region)) fail(`département ${d.code}: région ${d.region} not in regions.json`)
  if (!Object.hasOwn(ZONE_DEFENSE_BY_REGION, d.region)) {
    fail(`département ${d.code}: région ${d.region} has no entry in ZONE_DEFENSE_BY_REGION (refresh.mjs)`)
  }
  departementRows.push([d.code, d.nom, d.region, regionName.get(d.region),
    ZONE_DEFENSE_BY_REGION[d.region], d.zone, d.chefLieu])
}
departementRows.sort((a, b) => cmp(a[0], b[0]))

// --- previous centroids ------------------------------------------------------------------------
const previous = new Map() // insee_code -> row object
if (existsSync(previousFile)) {
  const {header, rows} = readCsvObjects(previousFile)
  if (header.join(',') !== HEADERS.communes.join(',')) {
    fail(`${previousFile}: unexpected header ${header.join(',')}`)
  }
  for (const r of rows) previous.set(r.insee_code, r)
  warn(`previous communes.csv: ${previous.size} rows (${previousFile})`)
} else if (opts.previous) {
  fail(`--previous ${opts.previous}: no such file`)
} else {
  warn(`no previous communes.csv at ${previousFile}: every centroid will be empty`)
}

const overrides = new Map()
if (opts.centroids) {
  const {header, rows} = readCsvObjects(path.resolve(opts.centroids))
  for (const h of ['insee_code', 'lat', 'lon']) {
    if (!header.includes(h)) fail(`${opts.centroids}: missing column ${h}`)
  }
  for (const r of rows) {
    if (!/^-?\d+\.\d{5}$/.test(r.lat) || !/^-?\d+\.\d{5}$/.test(r.lon)) {
      fail(`${opts.centroids}: ${r.insee_code}: lat/lon must have exactly 5 decimals (got ${r.lat},${r.lon})`)
    }
    overrides.set(r.insee_code, r)
  }
  warn(`centroid overrides: ${overrides.size} rows from ${opts.centroids}`)
}

// --- communes and postcodes ---------------------------------------------------------------------
const communeRows = []
const postcodePairs = new Set()
const arrondissementPairs = new Set()
const seen = new Set()
const fresh = []
const renamed = []
let withoutCentroid = 0
const missingCentroid = [] // outside the overseas collectivités, which ADMIN EXPRESS does not cover

for (const c of communesJson) {
  const type = COMMUNE_TYPES[c.type]
  if (!type) continue
  if (seen.has(c.code)) fail(`duplicate commune code ${c.code}`)
  seen.add(c.code)
  if (!departementCodes.has(c.departement)) fail(`commune ${c.code}: unknown département ${c.departement}`)
  const parent = type === 'arrondissement_municipal' ? c.commune : ''
  if (type === 'arrondissement_municipal' && !parent) fail(`arrondissement ${c.code} without parent commune`)

  let lat = ''
  let lon = ''
  let source = ''
  const prev = previous.get(c.code)
  if (prev) {
    ({lat, lon, centroid_source: source} = prev)
    if (prev.name !== c.nom) renamed.push(`${c.code} ${prev.name} -> ${c.nom}`)
  }
  const o = overrides.get(c.code)
  if (o) {
    lat = o.lat
    lon = o.lon
    source = 'admin-express'
  }
  if (lat === '') {
    withoutCentroid++
    if (c.zone !== 'com') missingCentroid.push(`${c.code} ${c.nom} (${c.departement})`)
  }
  if (!prev && lat === '') fresh.push(`${c.code} ${c.nom} (${c.departement})`)

  communeRows.push([c.code, c.nom, type, parent, c.departement, c.region, c.zone,
    c.population ?? '', lat, lon, source])

  const target = type === 'commune' ? postcodePairs : arrondissementPairs
  for (const pc of c.codesPostaux ?? []) target.add(`${pc},${c.code}`)
}
communeRows.sort((a, b) => cmp(a[0], b[0]))

const gone = [...previous.values()].filter(r => !seen.has(r.insee_code))
  .map(r => `${r.insee_code} ${r.name} (${r.departement_code})`)
const unusedOverrides = [...overrides.keys()].filter(k => !seen.has(k))
if (unusedOverrides.length > 0) warn(`centroid overrides for unknown codes (ignored): ${unusedOverrides.join(' ')}`)

const pairRows = set => [...set].map(s => s.split(','))
  .sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]))
const postcodeRows = pairRows(postcodePairs)
const arrondissementRows = pairRows(arrondissementPairs)

// --- write ---------------------------------------------------------------------------------------
mkdirSync(outDir, {recursive: true})
writeAtomic(path.join(outDir, 'communes.csv'), csvText(HEADERS.communes, communeRows))
writeAtomic(path.join(outDir, 'postcodes.csv'), csvText(HEADERS.postcodes, postcodeRows))
writeAtomic(path.join(outDir, 'postcodes_arrondissements.csv'), csvText(HEADERS.postcodes, arrondissementRows))
writeAtomic(path.join(outDir, 'departements.csv'), csvText(HEADERS.departements, departementRows))

// --- report --------------------------------------------------------------------------------------
const nCommunes = communeRows.filter(r => r[2] === 'commune').length
warn(`wrote ${outDir}`)
warn(`communes.csv: ${communeRows.length} rows (${nCommunes} communes + ${communeRows.length - nCommunes} arrondissements municipaux), ${withoutCentroid} without centroid`)
warn(`postcodes.csv: ${postcodeRows.length} pairs, ${new Set(postcodeRows.map(r => r[0])).size} postcodes`)
warn(`postcodes_arrondissements.csv: ${arrondissementRows.length} pairs`)
warn(`departements.csv: ${departementRows.length} rows`)
if (renamed.length > 0) warn(`${renamed.length} renamed (centroid kept):\n  ${renamed.join('\n  ')}`)
if (gone.length > 0) warn(`${gone.length} no longer in the COG (dropped):\n  ${gone.join('\n  ')}`)
const list = items => (items.length > 50
  ? [...items.slice(0, 50), `... and ${items.length - 50} more`] : items).join('\n  ')
if (missingCentroid.length > 0) {
  warn(`${missingCentroid.length} without centroid outside the overseas collectivités (ADMIN EXPRESS should have them):\n  ${list(missingCentroid)}`)
}
if (previous.size === 0) {
  warn('no previous communes.csv: no centroid kept, every row is new')
} else if (fresh.length > 0) {
  warn(`${fresh.length} NEW codes, written with EMPTY lat/lon/centroid_source; compute their centroids from IGN ADMIN EXPRESS (seed-data/README.md) and rerun with --centroids:\n  ${fresh.join('\n  ')}`)
}
