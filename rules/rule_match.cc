// Condition matching (rule_match.h): the leaves of a compiled rule against
// one header. Top-level string values are read through DCMTK's getString
// (a pointer into the element, no copy) the first time a condition asks,
// split/trimmed once, and cached for the other rules (in the slots
// rule_eval.cc fills). Numbers in binary VRs (US, SS, UL, SL, FL, FD, UV,
// SV) are read with the typed getters. Values in sequences are walked item by item (nextInContainer, never DcmStack).
//
// String semantics (README "Matching"): leading/trailing spaces are not
// significant; a multi-valued element (backslash, PS3.5 6.4) matches when
// any value does, except LT/ST/UT/UR where the backslash is text. Regexes
// use RE2::PartialMatch: they match anywhere unless anchored with ^...$.
// Text in the VRs that Specific Character Set governs is matched decoded to
// UTF-8 (rules/dicom_text.h), as rules are written: a value holding no byte
// >= 0x80 nor ESC is used as it is (no conversion, no allocation), others are
// decoded once per evaluation into a per-thread buffer.
#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcvr.h>

#include "rules/dicom_text.h"
#include "rules/rule_compiled.h"
#include "rules/rule_match.h"

namespace relais::rules::internal {

std::string_view TrimDicom(std::string_view v) {
  size_t b = 0, e = v.size();
  while (b < e && (v[b] == ' ' || v[b] == '\0')) ++b;
  while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\0')) --e;
  return v.substr(b, e - b);
}

namespace {

// Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF): exactly what RE2's '.' matches in UTF-8 mode.
bool IsValidUtf8(std::string_view v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  const auto* end = p + v.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (size_t i = 2; i <= n; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p += n + 1;
  }
  return true;
}

}  // namespace

// No submatches and both ends anchored: RE2 answers from its DFA alone,
// which allocates only while its cache warms up.
bool WildcardMatch(const Wildcard& w, std::string_view v) {
  const RE2& program = IsValidUtf8(v) ? *w.utf8 : *w.latin1;
  return program.Match(re2::StringPiece(v.data(), v.size()), 0, v.size(), RE2::ANCHOR_BOTH, nullptr, 0);
}

bool ParseIp(const char* text, uint8_t out[16]) {
  in_addr v4;
  if (inet_pton(AF_INET, text, &v4) == 1) {
    std::memset(out, 0, 10);
    out[10] = out[11] = 0xFF;
    std::memcpy(out + 12, &v4, 4);
    return true;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, text, &v6) == 1) {
    std::memcpy(out, &v6, 16);
    return true;
  }
  return false;
}

bool ParseCidr(std::string_view text, Cidr* out) {
  if (text.empty() || text.size() > 64) return false;
  char buf[65];
  size_t slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  std::memcpy(buf, addr.data(), addr.size());
  buf[addr.size()] = '\0';
  if (!ParseIp(buf, out->addr)) return false;
  bool v4 = addr.find(':') == std::string_view::npos;
  int max_bits = v4 ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), bits);
    if (ec != std::errc() || end != p.data() + p.size() || p.empty() || bits < 0 || bits > max_bits) return false;
  }
  out->prefix = v4 ? 96 + bits : bits;
  // Host bits must be zero: "10.1.2.3/8" is almost always a typo.
  for (int i = out->prefix; i < 128; ++i) {
    if (out->addr[i / 8] & (0x80 >> (i % 8))) return false;
  }
  return true;
}

bool CidrContains(const Cidr& net, const uint8_t addr[16]) {
  int full = net.prefix / 8;
  if (std::memcmp(net.addr, addr, static_cast<size_t>(full)) != 0) return false;
  int rest = net.prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (net.addr[full] & mask) == (addr[full] & mask);
}

namespace {

DcmElement* FindIn(DcmItem* item, uint32_t tag) {
  uint16_t g = static_cast<uint16_t>(tag >> 16), e = static_cast<uint16_t>(tag & 0xFFFF);
  for (DcmObject* o = item->nextInContainer(nullptr); o != nullptr; o = item->nextInContainer(o)) {
    uint16_t og = o->getGTag();
    if (og < g) continue;
    if (og > g) return nullptr;
    uint16_t oe = o->getETag();
    if (oe == e) return static_cast<DcmElement*>(o);
    if (oe > e) return nullptr;
  }
  return nullptr;
}

bool IsTextVr(DcmEVR vr) { return vr == EVR_LT || vr == EVR_ST || vr == EVR_UT || vr == EVR_UR; }

// The VRs whose values Specific Character Set governs (PS3.5 6.1.2.3).
bool IsCharsetVr(DcmEVR vr) {
  return vr == EVR_SH || vr == EVR_LO || vr == EVR_ST || vr == EVR_LT || vr == EVR_PN || vr == EVR_UC || vr == EVR_UT;
}

TextKind KindOf(DcmEVR vr) {
  if (vr == EVR_PN) return TextKind::kPersonName;
  if (vr == EVR_ST || vr == EVR_LT || vr == EVR_UT) return TextKind::kText;
  return TextKind::kValue;
}

// The string of a string-VR element without copying; false for binary VRs.
bool GetStringValue(DcmElement* e, const char** s, uint32_t* len) {
  if (!DcmVR(e->ident()).isaString()) return false;
  char* p = nullptr;
  Uint32 n = 0;
  if (e->getString(p, n).bad() || p == nullptr) {
    *s = "";
    *len = 0;
    return true;
  }
  *s = p;
  *len = n;
  return true;
}

// The header's Specific Character Set (0008,0005), looked up once.
std::string_view Charset(Context* ctx) {
  if (ctx->charset_state == 0) {
    ctx->charset_state = 1;
    DcmElement* e = ctx->header != nullptr ? FindIn(ctx->header, 0x00080005) : nullptr;
    const char* s = nullptr;
    uint32_t len = 0;
    if (e != nullptr && GetStringValue(e, &s, &len)) ctx->charset = std::string_view(s, len);
  }
  return ctx->charset;
}

// Points *s/*len at the UTF-8 decoding of the string value of `e` (in
// `buffer`) when it needs one; otherwise leaves them as they are.
// `charset`: the item's own Specific Character Set, if it declares one;
// otherwise the header's.
void DecodeIfNeeded(DcmElement* e, Context* ctx, std::optional<std::string_view> charset, std::string* buffer,
                    const char** s, uint32_t* len) {
  if (*len == 0 || !IsCharsetVr(e->ident())) return;
  std::string_view raw(*s, *len);
  if (!NeedsDecoding(raw)) return;
  DecodeDicomTextInto(raw, charset ? *charset : Charset(ctx), KindOf(e->ident()), buffer);
  *s = buffer->data();
  *len = static_cast<uint32_t>(buffer->size());
}

bool GetNumber(DcmElement* e, unsigned long i, double* d) {
  switch (e->ident()) {
    case EVR_US: {
      Uint16 v;
      if (e->getUint16(v, i).bad()) return false;
      *d = v;
      return true;
    }
    case EVR_SS: {
      Sint16 v;
      if (e->getSint16(v, i).bad()) return false;
      *d = v;
      return true;
    }
    case EVR_UL: {
      Uint32 v;
      if (e->getUint32(v, i).bad()) return false;
      *d = v;
      return true;
    }
    case EVR_SL: {
      Sint32 v;
      if (e->getSint32(v, i).bad()) return false;
      *d = v;
      return true;
    }
    case EVR_FL: {
      Float32 v;
      if (e->getFloat32(v, i).bad()) return false;
      *d = v;
      return true;
    }
    case EVR_FD: {
      Float64 v;
      if (e->getFloat64(v, i).bad()) return false;
      *d = v;
      return true;
    }
    case EVR_UV: {
      Uint64 v;
      if (e->getUint64(v, i).bad()) return false;
      *d = static_cast<double>(v);
      return true;
    }
    case EVR_SV: {
      Sint64 v;
      if (e->getSint64(v, i).bad()) return false;
      *d = static_cast<double>(v);
      return true;
    }
    default: return false;
  }
}

bool ParseNumber(std::string_view v, double* d) {
  if (!v.empty() && v[0] == '+') v.remove_prefix(1);
  if (v.empty()) return false;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *d);
  return ec == std::errc() && end == v.data() + v.size();
}

bool InRange(const Condition& c, double d) { return (!c.has_min || d >= c.min) && (!c.has_max || d <= c.max); }

bool MatchOneString(const Condition& c, std::string_view v) {
  switch (c.op) {
    case Condition::Op::kEquals: {
      for (const std::string& want : c.values) {
        if (want == v) return true;
      }
      double d;
      if (!c.numbers.empty() && ParseNumber(v, &d)) {
        for (double n : c.numbers) {
          if (n == d) return true;
        }
      }
      return false;
    }
    case Condition::Op::kRegex:
      // PartialMatch without its argument plumbing: an unanchored match, no submatches.
      return c.regex->Match(re2::StringPiece(v.data(), v.size()), 0, v.size(), RE2::UNANCHORED, nullptr, 0);
    case Condition::Op::kWildcard: return WildcardMatch(c.wildcard, v);
    case Condition::Op::kRange: {
      double d;
      return ParseNumber(v, &d) && InRange(c, d);
    }
    case Condition::Op::kDateRange: {
      // DA is YYYYMMDD; DT starts with it (PS3.5 6.2).
      if (v.size() < 8) return false;
      std::string_view day = v.substr(0, 8);
      for (char ch : day) {
        if (ch < '0' || ch > '9') return false;
      }
      return (c.from.empty() || day >= std::string_view(c.from)) && (c.to.empty() || day <= std::string_view(c.to));
    }
    case Condition::Op::kCidr:
    case Condition::Op::kPresent: return false;
  }
  return false;
}

// True when any value of the backslash-separated `all` matches.
bool MatchStringValues(const Condition& c, std::string_view all, bool multi) {
  if (!multi) return MatchOneString(c, TrimDicom(all));
  size_t start = 0;
  while (true) {
    size_t bs = all.find('\\', start);
    std::string_view v = all.substr(start, bs == std::string_view::npos ? std::string_view::npos : bs - start);
    if (MatchOneString(c, TrimDicom(v))) return true;
    if (bs == std::string_view::npos) return false;
    start = bs + 1;
  }
}

bool MatchNumbers(const Condition& c, DcmElement* e) {
  unsigned long vm = e->getVM();
  for (unsigned long i = 0; i < vm; ++i) {
    double d;
    if (!GetNumber(e, i, &d)) return false;
    if (c.op == Condition::Op::kEquals) {
      for (double n : c.numbers) {
        if (n == d) return true;
      }
    } else if (c.op == Condition::Op::kRange && InRange(c, d)) {
      return true;
    }
  }
  return false;
}

bool MatchElement(const Condition& c, DcmElement* e, const char* s, uint32_t len, bool is_string) {
  if (is_string) return MatchStringValues(c, std::string_view(s, len), !IsTextVr(e->ident()));
  return MatchNumbers(c, e);
}

// The Specific Character Set `item` declares itself, else `inherited`: a
// sequence item may carry its own (0008,0005), which then applies to it and
// to the items nested in it.
std::optional<std::string_view> ItemCharset(DcmItem* item, std::optional<std::string_view> inherited) {
  DcmElement* e = FindIn(item, 0x00080005);
  const char* s = nullptr;
  uint32_t len = 0;
  if (e != nullptr && GetStringValue(e, &s, &len)) return std::string_view(s, len);
  return inherited;
}

// Walks path[depth..] below `item`; true when the leaf exists (present) or
// matches, in any item of the sequences on the way. `charset`: the
// character set declared on the way down (nullopt: the header's).
bool MatchPath(const Condition& c, DcmItem* item, size_t depth, bool presence, Context* ctx,
               std::optional<std::string_view> charset) {
  DcmElement* e = FindIn(item, c.path[depth]);
  if (e == nullptr) return false;
  if (depth + 1 == c.path.size()) {
    if (presence) return true;
    const char* s = nullptr;
    uint32_t len = 0;
    bool is_string = GetStringValue(e, &s, &len);
    std::string decoded;
    if (is_string) DecodeIfNeeded(e, ctx, charset, &decoded, &s, &len);
    return MatchElement(c, e, s, len, is_string);
  }
  if (e->ident() != EVR_SQ) return false;
  auto* seq = static_cast<DcmSequenceOfItems*>(static_cast<DcmObject*>(e));
  unsigned long n = seq->card();
  for (unsigned long i = 0; i < n; ++i) {
    DcmItem* child = seq->getItem(i);
    if (child != nullptr && MatchPath(c, child, depth + 1, presence, ctx, ItemCharset(child, charset))) return true;
  }
  return false;
}

bool MatchTopLevel(const Condition& c, Context* ctx) {
  Slot& slot = ctx->slots[c.slot];
  if (slot.element == nullptr) return false;
  if (slot.fetched == 0) {
    slot.fetched = GetStringValue(slot.element, &slot.str, &slot.len) ? 1 : 2;
    if (slot.fetched == 1) {
      DecodeIfNeeded(slot.element, ctx, std::nullopt, &ctx->decoded[c.slot], &slot.str, &slot.len);
      // Split and trim once for every condition on this element: most values are single.
      slot.multi = !IsTextVr(slot.element->ident()) && std::memchr(slot.str, '\\', slot.len) != nullptr;
      if (!slot.multi) slot.single = TrimDicom(std::string_view(slot.str, slot.len));
    }
  }
  if (slot.fetched == 1 && !slot.multi) return MatchOneString(c, slot.single);
  return MatchElement(c, slot.element, slot.str, slot.len, slot.fetched == 1);
}

bool MatchTag(const Condition& c, Context* ctx) {
  bool presence = c.op == Condition::Op::kPresent;
  bool found;
  if (ctx->header == nullptr) {
    found = false;
  } else if (c.path.size() == 1) {
    found = presence ? ctx->slots[c.slot].element != nullptr : MatchTopLevel(c, ctx);
  } else {
    found = MatchPath(c, ctx->header, 0, presence, ctx, std::nullopt);
  }
  return presence ? found == c.present : found;
}

bool MatchAssoc(const Condition& c, Context* ctx) {
  if (c.field == Condition::Field::kPeer) {
    if (ctx->peer_state == 0) {
      ctx->peer_state = ParseIp(ctx->facts->peer_ip.c_str(), ctx->peer) ? 1 : 2;
    }
    if (ctx->peer_state != 1) return false;
    for (const Cidr& net : c.cidrs) {
      if (CidrContains(net, ctx->peer)) return true;
    }
    return false;
  }
  const std::string* v = &ctx->facts->calling_ae;
  if (c.field == Condition::Field::kCalledAe) v = &ctx->facts->called_ae;
  if (c.field == Condition::Field::kListener) v = &ctx->facts->listener;
  return MatchOneString(c, TrimDicom(*v));
}

bool LocalTime(Context* ctx) {
  if (ctx->time_state == 0) ctx->time_state = localtime_r(&ctx->now, &ctx->local) != nullptr ? 1 : 2;
  return ctx->time_state == 1;
}

bool MatchTime(const Condition& c, Context* pctx) {
  if (!LocalTime(pctx)) return false;
  const Context& ctx = *pctx;
  if (!(c.days & (1u << ctx.local.tm_wday))) return false;
  if (!c.has_hours) return true;
  int m = ctx.local.tm_hour * 60 + ctx.local.tm_min;
  if (c.start_minute < c.end_minute) return m >= c.start_minute && m < c.end_minute;
  return m >= c.start_minute || m < c.end_minute;  // across midnight
}

}  // namespace

// Computes a leaf (kTag, kAssoc, kTime) and records it in the memo.
[[gnu::noinline]] bool ComputeLeaf(const Condition& c, Context* ctx) {
  bool m = c.kind == Condition::Kind::kTag     ? MatchTag(c, ctx)
           : c.kind == Condition::Kind::kAssoc ? MatchAssoc(c, ctx)
                                               : MatchTime(c, ctx);
  ctx->memo[c.memo] = m ? 1 : 0;
  return m;
}

// The tree walk, used for explanations (each top-level condition's result).
bool Match(const Condition& c, Context* ctx) {
  switch (c.kind) {
    case Condition::Kind::kAll:
      for (const Condition& child : c.children) {
        if (!Match(child, ctx)) return false;
      }
      return true;
    case Condition::Kind::kAny:
      for (const Condition& child : c.children) {
        if (Match(child, ctx)) return true;
      }
      return false;
    case Condition::Kind::kNot:
      for (const Condition& child : c.children) {
        if (!Match(child, ctx)) return true;
      }
      return false;
    case Condition::Kind::kTag:
    case Condition::Kind::kAssoc:
    case Condition::Kind::kTime: break;
  }
  int8_t memo = ctx->memo[c.memo];
  if (memo >= 0) return memo == 1;
  return ComputeLeaf(c, ctx);
}

// What the condition saw, for explanations (allocates; explain only).
std::string Observed(const Condition& c, Context* ctx) {
  auto quote = [](std::string_view v) {
    std::string q(1, '\'');
    if (v.size() > 64) {
      size_t cut = 61;  // on a character boundary: never half a UTF-8 sequence
      while (cut > 0 && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) --cut;
      q.append(v.substr(0, cut));
      q.append("...");
    } else {
      q.append(v);
    }
    q.push_back('\'');
    return q;
  };
  switch (c.kind) {
    case Condition::Kind::kTag:
      if (c.path.size() != 1) return "";
      if (ctx->slots[c.slot].element == nullptr) return " (absent)";
      if (c.op == Condition::Op::kPresent) return " (present)";
      if (ctx->slots[c.slot].fetched == 1) {
        return " (value " + quote(std::string_view(ctx->slots[c.slot].str, ctx->slots[c.slot].len)) + ")";
      }
      return "";
    case Condition::Kind::kAssoc: {
      const AssociationFacts& f = *ctx->facts;
      switch (c.field) {
        case Condition::Field::kCallingAe: return " (calling AE " + quote(f.calling_ae) + ")";
        case Condition::Field::kCalledAe: return " (called AE " + quote(f.called_ae) + ")";
        case Condition::Field::kPeer: return " (peer " + quote(f.peer_ip) + ")";
        case Condition::Field::kListener: return " (listener " + quote(f.listener) + ")";
      }
      return "";
    }
    case Condition::Kind::kTime: {
      if (!LocalTime(ctx)) return " (no local time)";
      static const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
      char buf[32];
      std::snprintf(buf, sizeof(buf), " (now %s %02d:%02d)", kDays[ctx->local.tm_wday % 7], ctx->local.tm_hour,
                    ctx->local.tm_min);
      return buf;
    }
    default: return "";
  }
}

}  // namespace relais::rules::internal
