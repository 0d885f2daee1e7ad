#include "chain/ingest/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include <memory>
#include <mutex>

namespace chainfs {
namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XPathCtxFree {
  void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct XPathObjFree {
  void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};

// A parsed document and its XPath context. No network, no entity
// expansion: the XML comes from libvirt, but is still input.
class Doc {
 public:
  static Result<Doc> Parse(const std::string& xml, const std::string& root,
                           const std::string& where) {
    static std::once_flag once;
    std::call_once(once, [] { xmlInitParser(); });
    Doc d;
    d.doc_.reset(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "libvirt.xml", nullptr,
                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
    if (!d.doc_) return Status::Corruption(where + ": not well-formed XML");
    xmlNode* r = xmlDocGetRootElement(d.doc_.get());
    if (r == nullptr || root != reinterpret_cast<const char*>(r->name))
      return Status::Corruption(where + ": the XML's root element is not <" + root + ">");
    d.ctx_.reset(xmlXPathNewContext(d.doc_.get()));
    if (!d.ctx_) return Status::IoError(where + ": out of memory parsing XML");
    return d;
  }

  // The nodes matching path, relative to node (null: the document).
  std::vector<xmlNode*> Nodes(const char* path, xmlNode* node = nullptr) const {
    ctx_->node = node ? node : xmlDocGetRootElement(doc_.get());
    std::unique_ptr<xmlXPathObject, XPathObjFree> o(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(path), ctx_.get()));
    std::vector<xmlNode*> out;
    if (o && o->nodesetval)
      for (int i = 0; i < o->nodesetval->nodeNr; ++i) out.push_back(o->nodesetval->nodeTab[i]);
    return out;
  }
  // The text of the first node matching path ("" if none).
  std::string Text(const char* path, xmlNode* node = nullptr) const {
    auto n = Nodes(path, node);
    if (n.empty()) return "";
    xmlChar* c = xmlNodeGetContent(n[0]);
    std::string s = c ? reinterpret_cast<const char*>(c) : "";
    xmlFree(c);
    return s;
  }
  bool Has(const char* path, xmlNode* node) const { return !Nodes(path, node).empty(); }

 private:
  std::unique_ptr<xmlDoc, DocFree> doc_;
  std::unique_ptr<xmlXPathContext, XPathCtxFree> ctx_;
};

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

Result<DomainInfo> ParseDomainXml(const std::string& xml, const std::string& where) {
  CHAINFS_ASSIGN_OR_RETURN(Doc doc, Doc::Parse(xml, "domain", where));
  DomainInfo info;
  info.name = doc.Text("/domain/name");
  info.uuid = doc.Text("/domain/uuid");
  for (xmlNode* n : doc.Nodes("/domain/devices/disk")) {
    DomainDisk d;
    d.target = doc.Text("target/@dev", n);
    if (d.target.empty()) return Status::Corruption(where + ": a <disk> has no <target dev=...>");
    d.device = doc.Text("@device", n);
    if (d.device.empty()) d.device = "disk";
    d.type = doc.Text("@type", n);
    d.driver_type = doc.Text("driver/@type", n);
    d.source = doc.Text("source/@file", n);
    if (d.source.empty()) d.source = doc.Text("source/@dev", n);
    if (d.source.empty()) d.source = doc.Text("source/@name", n);
    d.readonly = doc.Has("readonly", n);
    d.shareable = doc.Has("shareable", n);
    d.transient = doc.Has("transient", n);
    info.disks.push_back(std::move(d));
  }
  return info;
}

std::string DiskSkipReason(const DomainDisk& d) {
  if (d.device != "disk") return d.device + " device";
  if (d.readonly) return "read-only disk";
  if (d.shareable) return "shareable disk";
  if (d.transient) return "transient disk";
  if (d.type != "file" && d.type != "block" && d.type != "volume")
    return d.type + " disk (chainfs backs up file and block disks)";
  if (d.driver_type != "qcow2")
    return (d.driver_type.empty() ? std::string("unknown") : d.driver_type) +
           " image (a checkpoint needs qcow2 to keep its bitmap)";
  return "";
}

Result<CheckpointInfo> ParseCheckpointXml(const std::string& xml, const std::string& where) {
  CHAINFS_ASSIGN_OR_RETURN(Doc doc, Doc::Parse(xml, "domaincheckpoint", where));
  CheckpointInfo info;
  info.name = doc.Text("/domaincheckpoint/name");
  info.parent = doc.Text("/domaincheckpoint/parent/name");
  info.description = doc.Text("/domaincheckpoint/description");
  for (xmlNode* n : doc.Nodes("/domaincheckpoint/disks/disk")) {
    if (doc.Text("@checkpoint", n) != "bitmap") continue;
    std::string bitmap = doc.Text("@bitmap", n);
    info.bitmaps[doc.Text("@name", n)] = bitmap.empty() ? info.name : bitmap;
  }
  return info;
}

Result<BackupJobInfo> ParseBackupJob(const std::string& xml, const std::string& where) {
  CHAINFS_ASSIGN_OR_RETURN(Doc doc, Doc::Parse(xml, "domainbackup", where));
  BackupJobInfo job;
  job.socket = doc.Text("/domainbackup/server[@transport='unix']/@socket");
  for (xmlNode* n : doc.Nodes("/domainbackup/disks/disk[@backup='yes']")) {
    std::string e = doc.Text("@exportname", n);
    job.exports.push_back(e.empty() ? doc.Text("@name", n) : e);
  }
  return job;
}

std::string BackupJobXml(const std::string& socket_path, const std::vector<JobDisk>& disks) {
  std::string x = "<domainbackup mode='pull'>\n  <server transport='unix' socket='" +
                  Escape(socket_path) + "'/>\n  <disks>\n";
  for (const JobDisk& d : disks) {
    x += "    <disk name='" + Escape(d.target) + "'";
    if (!d.backup) {
      x += " backup='no'/>\n";
      continue;
    }
    x += " backup='yes' type='file'";
    if (d.since.empty()) {
      x += " backupmode='full'";
    } else {
      x += " backupmode='incremental' incremental='" + Escape(d.since) + "'";
      x += " exportbitmap='" + Escape(d.exportbitmap) + "'";
    }
    x += " exportname='" + Escape(d.exportname) + "'>\n      <scratch file='" + Escape(d.scratch) +
         "'/>\n    </disk>\n";
  }
  return x + "  </disks>\n</domainbackup>\n";
}

std::string CheckpointXml(const std::string& name, const std::string& description,
                          const std::vector<JobDisk>& disks) {
  std::string x = "<domaincheckpoint>\n  <name>" + Escape(name) + "</name>\n  <description>" +
                  Escape(description) + "</description>\n  <disks>\n";
  for (const JobDisk& d : disks)
    x += "    <disk name='" + Escape(d.target) + "' checkpoint='" +
         (d.backup ? "bitmap" : "no") + "'/>\n";
  return x + "  </disks>\n</domaincheckpoint>\n";
}

}  // namespace chainfs
