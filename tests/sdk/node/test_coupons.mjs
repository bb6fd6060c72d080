#!/usr/bin/env node
// Coupons, validations, redemptions and gift cards: a compatibility check for
// Tessera, driven by the official Voucherify Node SDK (@voucherify/sdk 2.9.0,
// pinned in package.json; install with `npm ci` or `npm install` in this folder).
//
// Usage:
//   TESSERA_URL=http://127.0.0.1:8080 TESSERA_APP_ID=... TESSERA_APP_TOKEN=... \
//       node tests/sdk/node/test_coupons.mjs
//
// Flows covered (every check is a named test case, run in order; a case whose
// prerequisite failed fails with "prerequisite missing"):
//   a) campaigns.create            POST /v1/campaigns  DISCOUNT_COUPONS, 3 generated codes,
//                                  AMOUNT 15.00 off, code_config prefix/length/charset, quantity 1
//      vouchers.list               GET  /v1/vouchers?campaign_id=...;  campaigns.get GET /v1/campaigns/{id}
//      campaigns.addVoucher        POST /v1/campaigns/{id}/vouchers (one more generated code)
//   b) campaigns.addCertainVoucher POST /v1/campaigns/{id}/vouchers/{code}
//   c) vouchers.get                GET  /v1/vouchers/{code} (and a 404 for an unknown code)
//   d) validations.validateStackable POST /v1/validations: applicable, unknown code, quantity exceeded
//   e) redemptions.redeemStackable POST /v1/redemptions; a second redemption is refused
//   f) redemptions.list            GET  /v1/redemptions;  redemptions.get GET /v1/redemptions/{id}
//   g) redemptions.rollback        POST /v1/redemptions/{id}/rollback?reason=...
//   h) vouchers.create             POST /v1/vouchers/{code} (GIFT_VOUCHER),
//      vouchers.balance.create     POST /v1/vouchers/{code}/balance, then validate/redeem with
//      gift.credits, balance afterwards, rollback restores the balance
//
// The last line printed is "<n> passed, <m> failed"; the exit status is 0 only if
// nothing failed (2 if the environment is incomplete). The SDK returns the parsed
// JSON as is, so the raw shapes (object names, integer amounts) are checked directly.

import { randomUUID } from 'node:crypto'
import VoucherifySdk from '@voucherify/sdk' // a UMD bundle: only the default export exists under ESM

const { VoucherifyServerSide } = VoucherifySdk
const TIMEOUT_MS = 15000
const GENERATION_WAIT_MS = 10000

function env(name) {
	const value = (process.env[name] || '').trim()
	if (!value) {
		console.error(`environment variable ${name} is not set`)
		console.log('0 passed, 1 failed')
		process.exit(2)
	}
	return value
}

const BASE_URL = env('TESSERA_URL').replace(/\/+$/, '')
const APP_ID = env('TESSERA_APP_ID')
const APP_TOKEN = env('TESSERA_APP_TOKEN')

const client = VoucherifyServerSide({
	applicationId: APP_ID,
	secretKey: APP_TOKEN,
	apiUrl: BASE_URL,
	exposeErrorCause: true, // keeps the axios error (and so the HTTP status) on VoucherifyError.cause
	timeoutMs: TIMEOUT_MS,
})

const RUN = randomUUID().replace(/-/g, '').slice(0, 10).toUpperCase()
const CAMPAIGN_NAME = `tessera-sdk-js-coupons-${RUN}`
const PREFIX = `JS${RUN}-`
const CODE_LENGTH = 10
const CHARSET = '0123456789'
const GENERATED_COUNT = 3
const CODE = `JSCODE-${RUN}`
const UNKNOWN_CODE = `JSNOPE-${RUN}`
const AMOUNT_OFF = 1500
const ORDER_AMOUNT = 20000
const CUSTOMER_SOURCE_ID = `tessera-sdk-js-coupons-cust-${RUN}`
const ROLLBACK_REASON = `sdk test rollback ${RUN}`

const GIFT_CODE = `JSGIFT-${RUN}`
const GIFT_AMOUNT = 5000
const GIFT_TOP_UP = 2500
const GIFT_ORDER_AMOUNT = 10000
const GIFT_CREDITS = 3000

const STATE = {}

class Failure extends Error {}

function check(cond, message) {
	if (!cond) throw new Failure(message)
}

const show = (v) => (v === undefined ? 'undefined' : JSON.stringify(v))

// JSON objects are unordered: compare with keys sorted at every level.
const canonical = (v) =>
	Array.isArray(v)
		? v.map(canonical)
		: v && typeof v === 'object'
			? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]))
			: v

function eq(actual, expected, what) {
	if (JSON.stringify(canonical(actual)) !== JSON.stringify(canonical(expected))) {
		throw new Failure(`${what}: expected ${show(expected)}, got ${show(actual)}`)
	}
}

function need(...keys) {
	for (const key of keys) {
		if (!(key in STATE)) throw new Failure(`prerequisite missing (${key}); an earlier test failed`)
	}
	return STATE[keys[0]]
}

const isInt = (v) => Number.isInteger(v)
const isDateString = (v) => typeof v === 'string' && !Number.isNaN(Date.parse(v)) && /^\d{4}-\d{2}-\d{2}T/.test(v)

function httpStatus(err) {
	return err?.cause?.response?.status
}

// Runs fn, which must fail with a VoucherifyError carrying the given HTTP status.
async function expectHttpError(fn, status, what) {
	let result
	try {
		result = await fn()
	} catch (err) {
		if (err instanceof Failure) throw err
		const got = httpStatus(err)
		check(got !== undefined, `${what}: no HTTP response (${err?.message || err})`)
		eq(got, status, `${what}: HTTP status`)
		check(isInt(err.code), `${what}: error body 'code' must be an integer, got ${show(err.code)}`)
		check(typeof err.key === 'string', `${what}: error body 'key' must be a string, got ${show(err.key)}`)
		return err
	}
	throw new Failure(`${what}: expected HTTP ${status}, the call succeeded with ${show(result).slice(0, 200)}`)
}

const customer = () => ({ source_id: CUSTOMER_SOURCE_ID })

async function validate(redeemables, amount) {
	const v = await client.validations.validateStackable({
		redeemables,
		order: { amount },
		customer: customer(),
	})
	check(v && typeof v === 'object', `validation response is not an object: ${show(v)}`)
	check(typeof v.valid === 'boolean', `'valid' must be a boolean, got ${show(v.valid)}`)
	check(Array.isArray(v.redeemables), `'redeemables' must be an array, got ${show(v.redeemables)}`)
	check(v.stacking_rules && typeof v.stacking_rules === 'object', `'stacking_rules' must be an object`)
	return v
}

function onlyRedeemable(v, code, status) {
	eq(v.redeemables.length, 1, 'number of redeemables')
	const r = v.redeemables[0]
	eq(r.id, code, 'redeemables[0].id')
	eq(r.object, 'voucher', 'redeemables[0].object')
	eq(r.status, status, 'redeemables[0].status')
	return r
}

function checkOrderTotals(order, { amount, discount, what }) {
	check(order && typeof order === 'object', `${what}: no order returned`)
	eq(order.amount, amount, `${what}.amount`)
	eq(order.total_discount_amount, discount, `${what}.total_discount_amount`)
	eq(order.total_amount, amount - discount, `${what}.total_amount`)
}

function checkGeneratedCode(code, prefix, length, charset, what) {
	check(typeof code === 'string' && code.startsWith(prefix), `${what}: code ${show(code)} lacks prefix ${show(prefix)}`)
	eq(code.length, prefix.length + length, `${what}: length of code ${show(code)}`)
	if (charset) {
		const rest = code.slice(prefix.length)
		check([...rest].every((ch) => charset.includes(ch)), `${what}: code ${show(code)} uses characters outside ${show(charset)}`)
	}
}

function checkCoupon(v, { code, what }) {
	eq(v.object, 'voucher', `${what}.object`)
	eq(v.code, code, `${what}.code`)
	eq(v.campaign, CAMPAIGN_NAME, `${what}.campaign`)
	eq(v.campaign_id, STATE.campaignId, `${what}.campaign_id`)
	eq(v.type, 'DISCOUNT_VOUCHER', `${what}.type`)
	eq(v.discount?.type, 'AMOUNT', `${what}.discount.type`)
	eq(v.discount?.amount_off, AMOUNT_OFF, `${what}.discount.amount_off`)
	eq(v.redemption?.quantity, 1, `${what}.redemption.quantity`)
	eq(v.active, true, `${what}.active`)
	check(typeof v.id === 'string' && v.id, `${what}.id must be a non-empty string, got ${show(v.id)}`)
	check(isDateString(v.created_at), `${what}.created_at must be an ISO 8601 string, got ${show(v.created_at)}`)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------- a) campaign + codes

async function test_create_discount_campaign() {
	const c = await client.campaigns.create({
		name: CAMPAIGN_NAME,
		description: 'created by tests/sdk/node/test_coupons.mjs',
		campaign_type: 'DISCOUNT_COUPONS',
		type: 'AUTO_UPDATE',
		vouchers_count: GENERATED_COUNT,
		metadata: { run: RUN },
		voucher: {
			type: 'DISCOUNT_VOUCHER',
			discount: { type: 'AMOUNT', amount_off: AMOUNT_OFF, effect: 'APPLY_TO_ORDER' },
			redemption: { quantity: 1 },
			code_config: { prefix: PREFIX, length: CODE_LENGTH, charset: CHARSET },
		},
	})
	check(typeof c?.id === 'string' && c.id, `campaign id must be a non-empty string, got ${show(c?.id)}`)
	STATE.campaignId = c.id
	eq(c.object, 'campaign', 'campaign.object')
	eq(c.name, CAMPAIGN_NAME, 'campaign.name')
	eq(c.campaign_type, 'DISCOUNT_COUPONS', 'campaign.campaign_type')
	eq(c.type, 'AUTO_UPDATE', 'campaign.type')
	eq(c.metadata, { run: RUN }, 'campaign.metadata')
	check(isDateString(c.created_at), `campaign.created_at must be an ISO 8601 string, got ${show(c.created_at)}`)
	eq(c.voucher?.type, 'DISCOUNT_VOUCHER', 'campaign.voucher.type')
	eq(c.voucher?.discount?.type, 'AMOUNT', 'campaign.voucher.discount.type')
	eq(c.voucher?.discount?.amount_off, AMOUNT_OFF, 'campaign.voucher.discount.amount_off')
	eq(c.voucher?.code_config?.prefix, PREFIX, 'campaign.voucher.code_config.prefix')
	eq(c.voucher?.code_config?.length, CODE_LENGTH, 'campaign.voucher.code_config.length')
	eq(c.voucher?.redemption?.quantity, 1, 'campaign.voucher.redemption.quantity')
	check(['DONE', 'IN_PROGRESS'].includes(c.vouchers_generation_status),
		`campaign.vouchers_generation_status must be DONE or IN_PROGRESS, got ${show(c.vouchers_generation_status)}`)
}

async function test_generated_codes_listed() {
	const campaignId = need('campaignId')
	const deadline = Date.now() + GENERATION_WAIT_MS
	let list
	for (;;) {
		list = await client.vouchers.list({ campaign_id: campaignId, limit: 100 })
		eq(list.object, 'list', 'vouchers list.object')
		eq(list.data_ref, 'vouchers', 'vouchers list.data_ref')
		check(Array.isArray(list.vouchers), `vouchers list.vouchers must be an array`)
		if (list.vouchers.length >= GENERATED_COUNT || Date.now() > deadline) break
		await sleep(500)
	}
	eq(list.vouchers.length, GENERATED_COUNT, 'number of vouchers generated in the campaign')
	const codes = list.vouchers.map((v, i) => {
		checkGeneratedCode(v.code, PREFIX, CODE_LENGTH, CHARSET, `vouchers[${i}]`)
		eq(v.campaign_id, campaignId, `vouchers[${i}].campaign_id`)
		eq(v.discount?.amount_off, AMOUNT_OFF, `vouchers[${i}].discount.amount_off`)
		return v.code
	})
	eq(new Set(codes).size, GENERATED_COUNT, 'number of distinct generated codes')
	STATE.generatedCodes = codes
}

async function test_get_campaign_counts_vouchers() {
	const campaignId = need('campaignId', 'generatedCodes')
	const c = await client.campaigns.get(campaignId)
	eq(c.id, campaignId, 'campaign.id')
	eq(c.name, CAMPAIGN_NAME, 'campaign.name')
	eq(c.vouchers_count, GENERATED_COUNT, 'campaign.vouchers_count')
	eq(c.vouchers_generation_status, 'DONE', 'campaign.vouchers_generation_status')
}

async function test_add_generated_voucher_to_campaign() {
	const campaignId = need('campaignId', 'generatedCodes')
	const v = await client.campaigns.addVoucher(campaignId)
	eq(v.object, 'voucher', 'added voucher.object')
	checkGeneratedCode(v.code, PREFIX, CODE_LENGTH, CHARSET, 'added voucher')
	check(!STATE.generatedCodes.includes(v.code), `added voucher reuses code ${show(v.code)}`)
	eq(v.campaign_id, campaignId, 'added voucher.campaign_id')
	eq(v.discount?.amount_off, AMOUNT_OFF, 'added voucher.discount.amount_off')
}

// ------------------------------------------------- b) add a specific code

async function test_add_specific_code_to_campaign() {
	const campaignId = need('campaignId')
	const v = await client.campaigns.addCertainVoucher(campaignId, CODE, {
		metadata: { run: RUN },
		additional_info: 'added by test_coupons.mjs',
	})
	checkCoupon(v, { code: CODE, what: 'added code' })
	eq(v.redemption?.redeemed_quantity, 0, 'added code.redemption.redeemed_quantity')
	eq(v.metadata, { run: RUN }, 'added code.metadata')
	eq(v.additional_info, 'added by test_coupons.mjs', 'added code.additional_info')
	STATE.voucherId = v.id
}

async function test_add_duplicate_code_rejected() {
	const campaignId = need('campaignId', 'voucherId')
	await expectHttpError(() => client.campaigns.addCertainVoucher(campaignId, CODE), 409, 'duplicate code')
}

// -------------------------------------------------------- c) get a voucher

async function test_get_voucher() {
	const voucherId = need('voucherId')
	const v = await client.vouchers.get(CODE)
	checkCoupon(v, { code: CODE, what: 'voucher' })
	eq(v.id, voucherId, 'voucher.id')
	eq(v.redemption?.redeemed_quantity, 0, 'voucher.redemption.redeemed_quantity')
}

async function test_get_unknown_voucher_404() {
	const err = await expectHttpError(() => client.vouchers.get(UNKNOWN_CODE), 404, 'unknown voucher')
	eq(err.code, 404, "error 'code'")
	eq(err.key, 'not_found', "error 'key'")
}

// ------------------------------------------------------------ d) validate

async function test_validate_applicable() {
	need('voucherId')
	const v = await validate([{ object: 'voucher', id: CODE }], ORDER_AMOUNT)
	eq(v.valid, true, 'valid')
	const r = onlyRedeemable(v, CODE, 'APPLICABLE')
	eq(r.result?.discount?.type, 'AMOUNT', 'redeemables[0].result.discount.type')
	eq(r.result?.discount?.amount_off, AMOUNT_OFF, 'redeemables[0].result.discount.amount_off')
	checkOrderTotals(v.order, { amount: ORDER_AMOUNT, discount: AMOUNT_OFF, what: 'order' })
	eq(v.order.discount_amount, AMOUNT_OFF, 'order.discount_amount')
	checkOrderTotals(r.order, { amount: ORDER_AMOUNT, discount: AMOUNT_OFF, what: 'redeemables[0].order' })
	check(typeof v.tracking_id === 'string' && v.tracking_id, `'tracking_id' must be a non-empty string, got ${show(v.tracking_id)}`)
}

async function test_validate_unknown_code_inapplicable() {
	const v = await validate([{ object: 'voucher', id: UNKNOWN_CODE }], ORDER_AMOUNT)
	eq(v.valid, false, 'valid')
	const r = onlyRedeemable(v, UNKNOWN_CODE, 'INAPPLICABLE')
	eq(r.result?.error?.code, 404, 'redeemables[0].result.error.code')
	eq(r.result?.error?.key, 'not_found', 'redeemables[0].result.error.key')
}

// -------------------------------------------------------------- e) redeem

async function test_redeem() {
	const voucherId = need('voucherId')
	const out = await client.redemptions.redeemStackable({
		redeemables: [{ object: 'voucher', id: CODE }],
		order: { amount: ORDER_AMOUNT },
		customer: customer(),
		metadata: { run: RUN },
	})
	check(Array.isArray(out?.redemptions) && out.redemptions.length === 1,
		`expected 1 redemption, got ${show(out?.redemptions?.length)}`)
	const r = out.redemptions[0]
	check(typeof r.id === 'string' && r.id, `redemption id must be a non-empty string, got ${show(r.id)}`)
	eq(r.object, 'redemption', 'redemption.object')
	eq(r.result, 'SUCCESS', 'redemption.result')
	eq(r.status, 'SUCCEEDED', 'redemption.status')
	eq(r.related_object_type, 'voucher', 'redemption.related_object_type')
	eq(r.related_object_id, voucherId, 'redemption.related_object_id')
	eq(r.voucher?.code, CODE, 'redemption.voucher.code')
	check(isDateString(r.date), `redemption.date must be an ISO 8601 string, got ${show(r.date)}`)
	eq(r.customer?.source_id, CUSTOMER_SOURCE_ID, 'redemption.customer.source_id')
	checkOrderTotals(out.order, { amount: ORDER_AMOUNT, discount: AMOUNT_OFF, what: 'order' })
	STATE.redemptionId = r.id
}

async function test_voucher_redeemed_quantity_after_redeem() {
	need('redemptionId')
	const v = await client.vouchers.get(CODE)
	eq(v.redemption?.redeemed_quantity, 1, 'voucher.redemption.redeemed_quantity')
	eq(v.redemption?.quantity, 1, 'voucher.redemption.quantity')
}

async function test_validate_quantity_exceeded() {
	need('redemptionId')
	const v = await validate([{ object: 'voucher', id: CODE }], ORDER_AMOUNT)
	eq(v.valid, false, 'valid')
	const r = onlyRedeemable(v, CODE, 'INAPPLICABLE')
	eq(r.result?.error?.key, 'quantity_exceeded', 'redeemables[0].result.error.key')
}

async function test_redeem_again_rejected() {
	need('redemptionId')
	await expectHttpError(
		() => client.redemptions.redeemStackable({
			redeemables: [{ object: 'voucher', id: CODE }],
			order: { amount: ORDER_AMOUNT },
			customer: customer(),
		}),
		400,
		'redemption over the quantity limit',
	)
}

// ------------------------------------------------------ f) list redemptions

async function test_list_redemptions_finds_redemption() {
	const redemptionId = need('redemptionId')
	let found
	for (let page = 1; page < 100; page++) {
		const list = await client.redemptions.list({ limit: 100, page, order: '-created_at' })
		if (page === 1) {
			eq(list.object, 'list', 'list.object')
			eq(list.data_ref, 'redemptions', 'list.data_ref')
			check(Array.isArray(list.redemptions), `list.redemptions must be an array`)
			check(isInt(list.total) && list.total >= 1, `list.total must be a positive integer, got ${show(list.total)}`)
		}
		const items = list.redemptions || []
		check(items.length <= 100, `limit=100 ignored: got ${items.length} redemptions`)
		found = items.find((r) => r.id === redemptionId)
		if (found || items.length < 100) break
	}
	check(found, `redemption ${redemptionId} not found in GET /v1/redemptions`)
	eq(found.object, 'redemption', 'list item.object')
	eq(found.result, 'SUCCESS', 'list item.result')
	eq(found.status, 'SUCCEEDED', 'list item.status')
	eq(found.voucher?.code, CODE, 'list item.voucher.code')
}

async function test_list_redemptions_respects_limit() {
	need('redemptionId')
	const list = await client.redemptions.list({ limit: 1 })
	eq(list.redemptions?.length, 1, 'number of redemptions returned with limit=1')
}

async function test_get_redemption() {
	const redemptionId = need('redemptionId')
	const r = await client.redemptions.get(redemptionId)
	eq(r.id, redemptionId, 'redemption.id')
	eq(r.object, 'redemption', 'redemption.object')
	eq(r.status, 'SUCCEEDED', 'redemption.status')
	eq(r.result, 'SUCCESS', 'redemption.result')
}

// ------------------------------------------------------------- g) rollback

async function test_rollback_redemption() {
	const redemptionId = need('redemptionId')
	const rb = await client.redemptions.rollback(redemptionId, ROLLBACK_REASON) // reason goes in the query string
	check(typeof rb?.id === 'string' && rb.id && rb.id !== redemptionId, `rollback id must be a new id, got ${show(rb?.id)}`)
	eq(rb.object, 'redemption_rollback', 'rollback.object')
	eq(rb.redemption, redemptionId, 'rollback.redemption')
	eq(rb.result, 'SUCCESS', 'rollback.result')
	eq(rb.status, 'SUCCEEDED', 'rollback.status')
	eq(rb.reason, ROLLBACK_REASON, 'rollback.reason')
	eq(rb.related_object_type, 'voucher', 'rollback.related_object_type')
	STATE.rolledBack = true
}

async function test_voucher_redeemed_quantity_after_rollback() {
	need('rolledBack')
	const v = await client.vouchers.get(CODE)
	eq(v.redemption?.redeemed_quantity, 0, 'voucher.redemption.redeemed_quantity')
}

async function test_redemption_marked_rolled_back() {
	const redemptionId = need('redemptionId', 'rolledBack')
	const r = await client.redemptions.get(redemptionId)
	eq(r.status, 'ROLLED_BACK', 'redemption.status after rollback')
}

async function test_rollback_twice_rejected() {
	const redemptionId = need('redemptionId', 'rolledBack')
	await expectHttpError(() => client.redemptions.rollback(redemptionId), 400, 'second rollback')
}

async function test_validate_after_rollback_applicable() {
	need('rolledBack')
	const v = await validate([{ object: 'voucher', id: CODE }], ORDER_AMOUNT)
	eq(v.valid, true, 'valid')
	onlyRedeemable(v, CODE, 'APPLICABLE')
	checkOrderTotals(v.order, { amount: ORDER_AMOUNT, discount: AMOUNT_OFF, what: 'order' })
}

// ------------------------------------------------------------ h) gift card

async function test_create_gift_voucher() {
	const v = await client.vouchers.create({
		code: GIFT_CODE, // the SDK posts to /v1/vouchers/{code}
		type: 'GIFT_VOUCHER',
		gift: { amount: GIFT_AMOUNT },
		metadata: { run: RUN },
	})
	eq(v?.object, 'voucher', 'gift voucher.object')
	eq(v.code, GIFT_CODE, 'gift voucher.code')
	eq(v.type, 'GIFT_VOUCHER', 'gift voucher.type')
	eq(v.gift?.amount, GIFT_AMOUNT, 'gift voucher.gift.amount')
	eq(v.gift?.balance, GIFT_AMOUNT, 'gift voucher.gift.balance')
	eq(v.active, true, 'gift voucher.active')
	check(typeof v.id === 'string' && v.id, `gift voucher.id must be a non-empty string, got ${show(v.id)}`)
	STATE.giftId = v.id
}

async function test_create_gift_voucher_duplicate_rejected() {
	need('giftId')
	await expectHttpError(
		() => client.vouchers.create({ code: GIFT_CODE, type: 'GIFT_VOUCHER', gift: { amount: GIFT_AMOUNT } }),
		409,
		'duplicate gift voucher code',
	)
}

async function test_add_gift_balance() {
	const giftId = need('giftId')
	const b = await client.vouchers.balance.create(GIFT_CODE, { amount: GIFT_TOP_UP })
	eq(b?.object, 'balance', 'balance.object')
	eq(b.amount, GIFT_TOP_UP, 'balance.amount')
	eq(b.balance, GIFT_AMOUNT + GIFT_TOP_UP, 'balance.balance')
	eq(b.total, GIFT_AMOUNT + GIFT_TOP_UP, 'balance.total')
	eq(b.type, 'gift_voucher', 'balance.type')
	eq(b.operation_type, 'MANUAL', 'balance.operation_type')
	eq(b.related_object, { type: 'voucher', id: giftId }, 'balance.related_object')
	STATE.giftToppedUp = true
}

async function test_gift_balance_after_top_up() {
	need('giftToppedUp')
	const v = await client.vouchers.get(GIFT_CODE)
	eq(v.gift?.amount, GIFT_AMOUNT + GIFT_TOP_UP, 'gift.amount')
	eq(v.gift?.balance, GIFT_AMOUNT + GIFT_TOP_UP, 'gift.balance')
}

async function test_validate_gift_credits() {
	need('giftToppedUp')
	const v = await validate([{ object: 'voucher', id: GIFT_CODE, gift: { credits: GIFT_CREDITS } }], GIFT_ORDER_AMOUNT)
	eq(v.valid, true, 'valid')
	const r = onlyRedeemable(v, GIFT_CODE, 'APPLICABLE')
	eq(r.result?.gift?.credits, GIFT_CREDITS, 'redeemables[0].result.gift.credits')
	checkOrderTotals(v.order, { amount: GIFT_ORDER_AMOUNT, discount: GIFT_CREDITS, what: 'order' })
}

async function test_redeem_gift_partially() {
	need('giftToppedUp')
	const out = await client.redemptions.redeemStackable({
		redeemables: [{ object: 'voucher', id: GIFT_CODE, gift: { credits: GIFT_CREDITS } }],
		order: { amount: GIFT_ORDER_AMOUNT },
		customer: customer(),
	})
	check(Array.isArray(out?.redemptions) && out.redemptions.length === 1, 'expected 1 redemption')
	const r = out.redemptions[0]
	eq(r.result, 'SUCCESS', 'redemption.result')
	eq(r.status, 'SUCCEEDED', 'redemption.status')
	eq(r.amount, GIFT_CREDITS, 'redemption.amount')
	eq(r.gift?.amount, GIFT_CREDITS, 'redemption.gift.amount')
	eq(r.voucher?.code, GIFT_CODE, 'redemption.voucher.code')
	checkOrderTotals(out.order, { amount: GIFT_ORDER_AMOUNT, discount: GIFT_CREDITS, what: 'order' })
	STATE.giftRedemptionId = r.id
}

async function test_gift_balance_after_redeem() {
	need('giftRedemptionId')
	const v = await client.vouchers.get(GIFT_CODE)
	eq(v.gift?.balance, GIFT_AMOUNT + GIFT_TOP_UP - GIFT_CREDITS, 'gift.balance')
	eq(v.gift?.amount, GIFT_AMOUNT + GIFT_TOP_UP, 'gift.amount')
	eq(v.redemption?.redeemed_quantity, 1, 'gift voucher.redemption.redeemed_quantity')
}

async function test_validate_gift_over_balance_inapplicable() {
	need('giftRedemptionId')
	const credits = GIFT_AMOUNT + GIFT_TOP_UP // more than what is left
	const v = await validate([{ object: 'voucher', id: GIFT_CODE, gift: { credits } }], credits * 2)
	eq(v.valid, false, 'valid')
	onlyRedeemable(v, GIFT_CODE, 'INAPPLICABLE')
}

async function test_rollback_gift_redemption_restores_balance() {
	const redemptionId = need('giftRedemptionId')
	const rb = await client.redemptions.rollback(redemptionId, { reason: ROLLBACK_REASON })
	eq(rb?.result, 'SUCCESS', 'rollback.result')
	eq(rb.redemption, redemptionId, 'rollback.redemption')
	eq(rb.reason, ROLLBACK_REASON, 'rollback.reason')
	const v = await client.vouchers.get(GIFT_CODE)
	eq(v.gift?.balance, GIFT_AMOUNT + GIFT_TOP_UP, 'gift.balance after rollback')
}

const TESTS = [
	test_create_discount_campaign,
	test_generated_codes_listed,
	test_get_campaign_counts_vouchers,
	test_add_generated_voucher_to_campaign,
	test_add_specific_code_to_campaign,
	test_add_duplicate_code_rejected,
	test_get_voucher,
	test_get_unknown_voucher_404,
	test_validate_applicable,
	test_validate_unknown_code_inapplicable,
	test_redeem,
	test_voucher_redeemed_quantity_after_redeem,
	test_validate_quantity_exceeded,
	test_redeem_again_rejected,
	test_list_redemptions_finds_redemption,
	test_list_redemptions_respects_limit,
	test_get_redemption,
	test_rollback_redemption,
	test_voucher_redeemed_quantity_after_rollback,
	test_redemption_marked_rolled_back,
	test_rollback_twice_rejected,
	test_validate_after_rollback_applicable,
	test_create_gift_voucher,
	test_create_gift_voucher_duplicate_rejected,
	test_add_gift_balance,
	test_gift_balance_after_top_up,
	test_validate_gift_credits,
	test_redeem_gift_partially,
	test_gift_balance_after_redeem,
	test_validate_gift_over_balance_inapplicable,
	test_rollback_gift_redemption_restores_balance,
]

function describe(err) {
	if (err instanceof Failure) return err.message
	const status = httpStatus(err)
	if (status !== undefined) {
		return `${err.constructor?.name || 'Error'}: HTTP ${status}; body: ${show(err.cause?.response?.data).slice(0, 500)}`
	}
	return `${err?.constructor?.name || 'Error'}: ${err?.code ? err.code + ' ' : ''}${err?.message || err}`
}

async function cleanup() {
	// Best effort; a server without DELETE support is not failed for it.
	if ('giftId' in STATE) await client.vouchers.delete(GIFT_CODE, { force: true }).catch(() => {})
	if ('campaignId' in STATE) await client.campaigns.delete(STATE.campaignId, { force: true }).catch(() => {})
}

async function main() {
	console.log(`Tessera coupons SDK test against ${BASE_URL} (@voucherify/sdk, run ${RUN})`)
	let passed = 0
	let failed = 0
	try {
		for (const test of TESTS) {
			const name = test.name.slice('test_'.length)
			try {
				await test()
				passed++
				console.log(`PASS ${name}`)
			} catch (err) {
				failed++
				console.log(`FAIL ${name}: ${describe(err)}`)
				if (process.env.TESSERA_TEST_VERBOSE) console.error(err)
			}
		}
	} finally {
		await cleanup()
	}
	console.log(`${passed} passed, ${failed} failed`)
	return failed === 0 ? 0 : 1
}

main().then(
	(code) => {
		process.exitCode = code
	},
	(err) => {
		console.error(err)
		console.log('0 passed, 1 failed')
		process.exitCode = 1
	},
)
