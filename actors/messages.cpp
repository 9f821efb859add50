// messages.cpp — registers the actors' message types with CAF.
#include "messages.h"

#include "runtime.h"

namespace woolly::actors {

void register_message_types(caf::actor_system_config& cfg) {
    cfg.add_message_type<stream_setup>("woolly.stream_setup");
    cfg.add_message_type<Step>("woolly.step");
    cfg.add_message_type<outgoing_batch>("woolly.outgoing_batch");
    cfg.add_message_type<SlotTable::Grant>("woolly.slot_grant");
    cfg.add_message_type<SlotStats>("woolly.slot_stats");
    cfg.add_message_type<tokenized>("woolly.tokenized");
    cfg.add_message_type<chat_prompt>("woolly.chat_prompt");
    cfg.add_message_type<std::vector<int32_t>>("woolly.token_ids");
    cfg.add_message_type<std::vector<float>>("woolly.floats");
    cfg.add_message_type<std::vector<std::string>>("woolly.strings");
    cfg.add_message_type<health>("woolly.health");
    cfg.add_message_type<answer>("woolly.answer");
    cfg.add_message_type<status_report>("woolly.status_report");
    cfg.add_message_type<token_list>("woolly.token_list");
}

} // namespace woolly::actors
