// The DICOM side of compiling rules: keywords and tags resolved through the
// DCMTK data dictionary, transfer syntax names, RE2 compilation with a
// memory limit. Called by rule_parser.cc and tag_edit.cc.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <unordered_map>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdicent.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dctag.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "rules/rule_compile.h"
#include "rules/toml_util.h"

namespace relais::rules::internal {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool ParseHex4(std::string_view s, uint16_t* out) {
  if (s.size() != 4) return false;
  uint16_t v = 0;
  for (char c : s) {
    int d = HexDigit(c);
    if (d < 0) return false;
    v = static_cast<uint16_t>(v << 4 | d);
  }
  *out = v;
  return true;
}

struct KeywordEntry {
  uint32_t tag;
  bool is_sequence;
};

// Every keyword of the dictionary, built once: findEntry(name) is a linear
// scan of the whole dictionary, far too slow for 1,000 rules.
struct Keywords {
  std::unordered_map<std::string, KeywordEntry> by_name;
  std::vector<std::string_view> names;  // for suggestions
};

const Keywords& AllKeywords() {
  static const Keywords kAll = [] {
    Keywords k;
    DcmDataDictionary& dict = dcmDataDict.wrlock();
    auto add = [&](const DcmDictEntry* e) {
      if (e->getTagName() == nullptr || e->getPrivateCreator() != nullptr) return;
      k.by_name.emplace(e->getTagName(), KeywordEntry{static_cast<uint32_t>(e->getGroup()) << 16 | e->getElement(),
                                                      e->getEVR() == EVR_SQ});
    };
    for (auto it = dict.normalBegin(); it != dict.normalEnd(); ++it) add(*it);
    for (auto it = dict.repeatingBegin(); it != dict.repeatingEnd(); ++it) add(*it);
    dcmDataDict.wrunlock();
    for (const auto& [name, entry] : k.by_name) k.names.push_back(name);
    std::sort(k.names.begin(), k.names.end());
    return k;
  }();
  return kAll;
}

struct XferName {
  const char* name;
  const char* uid;
};
// PS3.6 Annex A keywords (and the older names still seen in the field).
constexpr XferName kXferNames[] = {
    {"ImplicitVRLittleEndian", "1.2.840.10008.1.2"},
    {"ExplicitVRLittleEndian", "1.2.840.10008.1.2.1"},
    {"DeflatedExplicitVRLittleEndian", "1.2.840.10008.1.2.1.99"},
    {"ExplicitVRBigEndian", "1.2.840.10008.1.2.2"},
    {"JPEGBaseline8Bit", "1.2.840.10008.1.2.4.50"},
    {"JPEGBaseline", "1.2.840.10008.1.2.4.50"},
    {"JPEGExtended12Bit", "1.2.840.10008.1.2.4.51"},
    {"JPEGLossless", "1.2.840.10008.1.2.4.57"},
    {"JPEGLosslessSV1", "1.2.840.10008.1.2.4.70"},
    {"JPEGLSLossless", "1.2.840.10008.1.2.4.80"},
    {"JPEGLSNearLossless", "1.2.840.10008.1.2.4.81"},
    {"JPEG2000Lossless", "1.2.840.10008.1.2.4.90"},
    {"JPEG2000", "1.2.840.10008.1.2.4.91"},
    {"RLELossless", "1.2.840.10008.1.2.5"},
};

}  // namespace

std::string FormatTag(uint32_t tag) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "(%04X,%04X)", tag >> 16, tag & 0xFFFF);
  return buf;
}

bool DictionaryLoaded() { return dcmDataDict.isDictionaryLoaded(); }

std::optional<std::string> ResolveTag(std::string_view text, ResolvedTag* out) {
  std::string_view s = text;
  if (!s.empty() && s.front() == '(') {
    if (s.back() != ')') return "tag '" + std::string(text) + "' must be written (gggg,eeee)";
    s = s.substr(1, s.size() - 2);
  }
  uint16_t g, e;
  if (s.size() == 9 && s[4] == ',' && ParseHex4(s.substr(0, 4), &g) && ParseHex4(s.substr(5), &e)) {
    out->tag = static_cast<uint32_t>(g) << 16 | e;
  } else if (s.size() == 8 && ParseHex4(s.substr(0, 4), &g) && ParseHex4(s.substr(4), &e)) {
    out->tag = static_cast<uint32_t>(g) << 16 | e;
  } else if (!s.empty() && std::isalpha(static_cast<unsigned char>(s[0]))) {
    if (!DictionaryLoaded()) return std::string("the DICOM data dictionary is not loaded (check DCMDICTPATH)");
    std::string name(s);
    const Keywords& keywords = AllKeywords();
    auto it = keywords.by_name.find(name);
    if (it == keywords.by_name.end()) {
      std::string_view best = Closest(s, keywords.names);
      return "unknown DICOM keyword '" + name + "'" +
             (best.empty() ? "" : ", did you mean '" + std::string(best) + "'?");
    }
    out->tag = it->second.tag;
    out->is_sequence = it->second.is_sequence;
    out->known_vr = true;
    return std::nullopt;
  } else {
    return "'" + std::string(text) + "' is neither a DICOM keyword nor a tag (gggg,eeee)";
  }
  // A tag by number: look it up for its VR (private tags are not in the
  // dictionary without their creator; that is fine).
  out->is_sequence = false;
  out->known_vr = false;
  if (DictionaryLoaded()) {
    const DcmDataDictionary& dict = dcmDataDict.rdlock();
    const DcmDictEntry* entry =
        dict.findEntry(DcmTagKey(static_cast<Uint16>(out->tag >> 16), static_cast<Uint16>(out->tag & 0xFFFF)), nullptr);
    if (entry != nullptr) {
      out->is_sequence = entry->getEVR() == EVR_SQ;
      out->known_vr = true;
    }
    dcmDataDict.rdunlock();
  }
  return std::nullopt;
}

std::optional<std::string> ResolveTagPath(std::string_view text, std::vector<uint32_t>* path) {
  path->clear();
  size_t start = 0;
  while (true) {
    size_t dot = text.find('.', start);
    std::string_view part = text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty()) return "empty element in tag path '" + std::string(text) + "'";
    if (path->size() >= 8) return "tag path '" + std::string(text) + "' is deeper than 8 sequences";
    ResolvedTag t;
    if (auto err = ResolveTag(part, &t)) return err;
    bool last = dot == std::string_view::npos;
    if (!last && t.known_vr && !t.is_sequence) {
      return "'" + std::string(part) + "' is not a sequence, so '" + std::string(text) + "' cannot look inside it";
    }
    path->push_back(t.tag);
    if (last) return std::nullopt;
    start = dot + 1;
  }
}

std::optional<std::string> ResolveTransferSyntax(std::string_view text, std::string* uid) {
  for (const XferName& x : kXferNames) {
    if (text == x.name) {
      *uid = x.uid;
      return std::nullopt;
    }
  }
  if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
    std::string s(text);
    DcmXfer xfer(s.c_str());
    if (xfer.getXfer() == EXS_Unknown) return "unknown transfer syntax UID '" + s + "'";
    *uid = s;
    return std::nullopt;
  }
  std::vector<std::string_view> names;
  for (const XferName& x : kXferNames) names.push_back(x.name);
  return "unknown transfer syntax '" + std::string(text) + "'" + Suggest(text, names);
}

std::optional<std::string> CompileRegex(const std::string& pattern, std::shared_ptr<const RE2>* out) {
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(kMaxRegexMemory);
  auto re = std::make_shared<RE2>(pattern, options);
  if (!re->ok()) return "bad regex '" + pattern + "': " + re->error();
  *out = std::move(re);
  return std::nullopt;
}

uint64_t RegexMemory(const RE2& re) {
  return 1024 + re.pattern().size() + 8 * static_cast<uint64_t>(std::max(re.ProgramSize(), 0));
}

// '*' -> any sequence, '?' -> any one character (dot matching newlines
// too), every other character literal (QuoteMeta); anchored at both ends.
// In the Latin-1 program a character is a byte.
std::optional<std::string> CompileWildcard(std::string_view pattern, Wildcard* out) {
  const size_t stars = static_cast<size_t>(std::count(pattern.begin(), pattern.end(), '*'));
  if (stars > kMaxWildcardStars) {
    return "wildcard has " + std::to_string(stars) + " '*'; at most " + std::to_string(kMaxWildcardStars) +
           " are allowed, so that matching stays linear";
  }
  std::string re = "(?s)";
  std::string literal;
  auto flush = [&] {
    re += RE2::QuoteMeta(literal);
    literal.clear();
  };
  for (char ch : pattern) {
    if (ch == '*' || ch == '?') {
      flush();
      re += ch == '*' ? ".*" : ".";
    } else {
      literal += ch;
    }
  }
  flush();
  for (bool utf8 : {true, false}) {
    RE2::Options options;
    options.set_log_errors(false);
    options.set_max_mem(kMaxWildcardMemory);
    options.set_never_capture(true);
    if (!utf8) options.set_encoding(RE2::Options::EncodingLatin1);
    auto program = std::make_shared<RE2>(re, options);
    if (!program->ok()) return "bad wildcard '" + std::string(pattern) + "': " + program->error();
    (utf8 ? out->utf8 : out->latin1) = std::move(program);
  }
  return std::nullopt;
}

}  // namespace relais::rules::internal
