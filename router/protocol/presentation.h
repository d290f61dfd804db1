// Presentation context negotiation for the accepting side (SCP): which
// abstract syntaxes (SOP classes) and transfer syntaxes Relais accepts.
// Pure functions; thread: any.
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

// True for transfer syntaxes whose data sets Relais can store and parse the
// header of: Implicit/Explicit VR Little Endian, Explicit VR Big Endian,
// Deflated, and the encapsulated syntaxes (PS3.5 Annex A.4), including
// encapsulated ones newer than DCMTK (1.2.840.10008.1.2.4.*).
bool IsSupportedTransferSyntax(const std::string& uid);

// True when `uid` is an abstract syntax Relais accepts under `policy`.
bool IsAcceptedAbstractSyntax(const std::string& uid, const AcceptPolicy& policy);

// PS3.8 9.3.3.2: one result per proposed context, in the same order. The
// accepted transfer syntax is the first one the requestor proposed that
// Relais supports, except that Explicit VR Little Endian is preferred to
// Implicit VR Little Endian (it keeps the VRs of private elements).
std::vector<PresentationContextAc> NegotiateContexts(const std::vector<PresentationContextRq>& proposed,
                                                     const AcceptPolicy& policy);

}  // namespace relais::ul

#endif  // RELAIS_ROUTER_PROTOCOL_PRESENTATION_H_
