// Preparing a stored object for one destination: which presentation contexts
// to propose, which accepted context to send on, and — when the destination
// needs it — the data set rewritten with DCMTK (tag edits from the rules,
// transfer syntax conversion with DCMTK's codecs).
//
// Policy (issue 4, DESIGN.md "Deliver"):
// - An object is sent as stored whenever the peer accepts its SOP class in
//   its stored transfer syntax and the destination states no preference
//   that a conversion could satisfy.
// - When the destination lists preferred transfer syntaxes, the first one
//   (in the destination's order) that the peer accepted and that can be
//   produced WITHOUT LOSS is used: an uncompressed object may be compressed
//   losslessly (JPEG-LS lossless, JPEG lossless SV1, RLE, deflated); a
//   compressed object may be decompressed.
// - Never lossy: a lossy transfer syntax is only ever used for an object
//   already stored in that same lossy syntax (sent as is).
// - When the peer does not accept the stored syntax, fall back to Explicit
//   VR Little Endian, then Implicit VR Little Endian (decompressing).
//
// Internal header of router/. Pure functions except PrepareDataset, which is
// CPU-heavy (run it on the libuv thread pool) and thread-safe once
// RegisterCodecs() has run.
#ifndef RELAIS_ROUTER_DELIVER_SEND_PREP_H_
#define RELAIS_ROUTER_DELIVER_SEND_PREP_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "router/deliver/scu_association.h"
#include "rules/routing.h"
#include "store/store.h"

namespace relais::router {

inline constexpr char kImplicitVrLittleEndian[] = "1.2.840.10008.1.2";
inline constexpr char kExplicitVrLittleEndian[] = "1.2.840.10008.1.2.1";

// Registers DCMTK's decoders and lossless encoders (JPEG, JPEG-LS, RLE) once
// per process. Idempotent and thread-safe.
void RegisterCodecs();

// True for the native (uncompressed) syntaxes: implicit/explicit little
// endian, explicit big endian. Deflated is not "uncompressed" here.
bool IsUncompressedSyntax(const std::string& ts);
// True when decoding the syntax gives back exactly the original pixels:
// uncompressed, deflated, RLE, JPEG lossless (.57, .70), JPEG-LS lossless
// (.80), JPEG 2000 lossless (.90), HTJ2K lossless (.201, .202).
bool IsLosslessSyntax(const std::string& ts);
// True when Relais can turn `from` into `to` here without loss: identity;
// any syntax DCMTK can decode into an uncompressed or deflated one; an
// uncompressed/deflated one into a lossless syntax DCMTK can encode
// (JPEG-LS lossless .80, JPEG lossless SV1 .70, RLE .5). Nothing lossy.
bool CanConvert(const std::string& from, const std::string& to);

// The (SOP class, stored transfer syntax) of an object to send.
struct ObjectKind {
  std::string sop_class_uid;
  std::string transfer_syntax_uid;
  bool operator==(const ObjectKind&) const = default;
};

// Presentation contexts to propose to a destination for these objects, at
// most 128 (PS3.8 9.3.2.2; kinds beyond the limit are left out: the caller
// sends those on a later association). An SCP accepts one transfer syntax
// per context, chosen by ITS preference, so for each SOP class: one context
// per syntax we want honoured, alone — each preferred syntax that some
// object of the class can be converted to, then each stored syntax — and a
// fallback context with Explicit then Implicit VR Little Endian (a plain
// preferred syntax is only in the fallback; a plain stored one gets its own
// context too, so that it is sent as stored). Verification (1.2.840.10008.1.1) with
// Implicit VR LE comes first, so that the association can C-ECHO.
// Deterministic: same input, same output.
std::vector<ContextProposal> PlanContexts(const std::vector<ObjectKind>& kinds,
                                          const std::vector<std::string>& preferred);

// How to send one object on an established association.
struct SendChoice {
  uint8_t context_id = 0;
  std::string transfer_syntax;  // of the accepted context
  bool convert = false;         // transfer_syntax differs from the stored one
};
// Picks the accepted context to send `kind` on, following the policy at the
// top of this file; nullopt when no accepted context can carry it (the
// caller decides whether a new association or dead letter is due).
std::optional<SendChoice> ChooseContext(const std::vector<ScuAssociation::AcceptedContext>& accepted,
                                        const ObjectKind& kind, const std::vector<std::string>& preferred);

// Rewrites a data set: parses `dataset` (the raw stored bytes, in
// `stored_ts`) with DCMTK, applies `edits` (rules::ApplyEdits), converts to
// `target_ts` and encodes it. Errors: InvalidArgument when the data set
// cannot be parsed or converted (with DCMTK's reason; the caller dead-letters
// the row), Internal for anything else. Never crashes on malformed input.
Result<std::vector<uint8_t>> PrepareDataset(std::span<const uint8_t> dataset, const std::string& stored_ts,
                                            const std::string& target_ts, const std::vector<rules::TagEdit>& edits);

// An ObjectReader over bytes in memory (a prepared data set), handing out
// `chunk_size` bytes per Next. meta() returns `meta` with
// transfer_syntax_uid, raw_size and checksum set for `bytes`.
std::unique_ptr<store::ObjectReader> MakeMemoryReader(store::ObjectMeta meta, std::vector<uint8_t> bytes,
                                                      const std::string& transfer_syntax,
                                                      size_t chunk_size = 256 << 10);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_DELIVER_SEND_PREP_H_
