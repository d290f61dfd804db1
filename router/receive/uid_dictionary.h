// DCMTK's DICOM dictionary as the ul::UidDictionary that presentation
// context negotiation asks (router/protocol/presentation.h): the protocol
// core links no DCMTK, the receiving side does. Thread: any.
#ifndef RELAIS_ROUTER_RECEIVE_UID_DICTIONARY_H_
#define RELAIS_ROUTER_RECEIVE_UID_DICTIONARY_H_

#include "router/protocol/presentation.h"

namespace relais::router {

// The dictionary of DCMTK 3.6.x. Supported transfer syntaxes: every one
// DCMTK knows (Implicit/Explicit VR Little Endian, Explicit VR Big Endian,
// Deflated, the encapsulated syntaxes), and encapsulated syntaxes newer than
// DCMTK (1.2.840.10008.1.2.4.*), which keep the Explicit VR Little Endian
// header. Storage SOP classes: DCMTK's list of all storage SOP classes.
// The returned object lives for the whole program.
const ul::UidDictionary& DcmtkUidDictionary();

}  // namespace relais::router

#endif  // RELAIS_ROUTER_RECEIVE_UID_DICTIONARY_H_
