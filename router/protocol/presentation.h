// Presentation context negotiation for the accepting side (SCP): which
// abstract syntaxes (SOP classes) and transfer syntaxes Relais accepts.
// Pure functions; thread: any.
//
// The protocol core links no DICOM dictionary: what a UID names (a storage
// SOP class, a transfer syntax Relais can parse) is asked of a UidDictionary
// the caller passes in. The receiving side passes DCMTK's
// (router/receive/uid_dictionary.h); a test can pass a table.
#ifndef RELAIS_ROUTER_PROTOCOL_PRESENTATION_H_
#define RELAIS_ROUTER_PROTOCOL_PRESENTATION_H_

#include <string>
#include <vector>

#include "router/protocol/pdu.h"

namespace relais::ul {

inline constexpr char kVerificationSopClass[] = "1.2.840.10008.1.1";

struct AcceptPolicy {
  // Accept abstract syntaxes that DCMTK does not know (private SOP classes)
  // as storage. SOP classes DCMTK knows as non-storage (e.g. Query/Retrieve)
  // are always refused: Relais serves Verification and Storage only.
  bool accept_unknown_sop_classes = true;
};

// What the accepting side knows about UIDs. Each function is called only
// with a valid UID (PS3.5 9.1: digits and dots, at most 64 characters, no
// empty component) and must be safe to call from any thread.
// REQUIRES: all three are set.
struct UidDictionary {
  // True for transfer syntaxes whose data sets Relais can store and parse
  // the header of (PS3.5 Annex A.4).
  bool (*is_supported_transfer_syntax)(const std::string& uid);
  // True for a Storage SOP Class the dictionary knows.
  bool (*is_storage_sop_class)(const std::string& uid);
  // True for any UID the dictionary knows, storage or not.
  bool (*is_known_uid)(const std::string& uid);
};

// True when `uid` is an abstract syntax Relais accepts under `policy`:
// Verification, a storage SOP class `dict` knows, or (when the policy says
// so) a UID `dict` does not know at all.
bool IsAcceptedAbstractSyntax(const std::string& uid, const AcceptPolicy& policy, const UidDictionary& dict);

// PS3.8 9.3.3.2: one result per proposed context, in the same order. The
// accepted transfer syntax is the first one the requestor proposed that
// `dict` supports, except that Explicit VR Little Endian is preferred to
// Implicit VR Little Endian (it keeps the VRs of private elements).
std::vector<PresentationContextAc> NegotiateContexts(const std::vector<PresentationContextRq>& proposed,
                                                     const AcceptPolicy& policy, const UidDictionary& dict);

}  // namespace relais::ul

#endif  // RELAIS_ROUTER_PROTOCOL_PRESENTATION_H_
