// Differential-testing reference: converts raw MIME messages to the JSON twin document shape
// of docs/protocol.md section 2.3 using JavaMail (Debian libmail-java 1.6.5). Written from the spec only.
//
// Usage: java -cp javax.mail.jar:javax.activation.jar:. TwinReference WRITTEN_MS ORIGINAL_PATH FILE...
// Prints one JSON document per input file, one per line, in input order. Every non-ASCII or control
// character is written as a \\uXXXX escape, so stdout is plain ASCII; only JSON values matter.

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Date;
import java.util.Enumeration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import javax.mail.Address;
import javax.mail.Header;
import javax.mail.Message;
import javax.mail.Multipart;
import javax.mail.Part;
import javax.mail.Session;
import javax.mail.internet.InternetAddress;
import javax.mail.internet.MimeMessage;
import javax.mail.internet.MimeUtility;

public final class TwinReference {

    private interface AddressSource {
        Address[] get() throws Exception;
    }

    private TwinReference() {
    }

    public static void main(String[] args) throws Exception {
        String written = args[0];
        String original = args[1];
        Session session = Session.getDefaultInstance(new Properties());
        StringBuilder out = new StringBuilder();
        for (int i = 2; i < args.length; i++) {
            byte[] raw = Files.readAllBytes(Paths.get(args[i]));
            Object doc;
            try {
                doc = convert(session, raw, written, original);
            } catch (Throwable e) {
                doc = errorDocument(written, original, e.toString());
            }
            out.setLength(0);
            write(out, doc);
            System.out.println(out);
        }
        System.out.flush();
    }

    private static Map<String, Object> errorDocument(String written, String original, String text) {
        Map<String, Object> doc = new LinkedHashMap<>();
        List<Object> headers = new ArrayList<>();
        headers.add(pair("subject", "The mail server failed to handle this message."));
        doc.put("headers", headers);
        doc.put("original", original);
        Map<String, Object> dates = new LinkedHashMap<>();
        dates.put("written", written);
        doc.put("dates", dates);
        Map<String, Object> content = new LinkedHashMap<>();
        List<Object> contentHeaders = new ArrayList<>();
        contentHeaders.add(pair("Content-Type", "text/plain"));
        content.put("headers", contentHeaders);
        content.put("class", "string");
        content.put("value", text);
        doc.put("content", content);
        return doc;
    }

    private static List<Object> pair(String a, String b) {
        List<Object> p = new ArrayList<>();
        p.add(a);
        p.add(b);
        return p;
    }

    private static String b64(String text) throws Exception {
        return Base64.getEncoder().encodeToString(text.getBytes("UTF-8"));
    }

    private static Map<String, Object> convert(Session session, byte[] raw, String written, String original)
            throws Exception {
        MimeMessage m = new MimeMessage(session, new ByteArrayInputStream(raw));
        Map<String, Object> doc = new LinkedHashMap<>();
        Map<String, Object> addresses = new LinkedHashMap<>();
        bucket(addresses, "to", () -> m.getRecipients(Message.RecipientType.TO));
        bucket(addresses, "cc", () -> m.getRecipients(Message.RecipientType.CC));
        bucket(addresses, "bcc", () -> m.getRecipients(Message.RecipientType.BCC));
        bucket(addresses, "reply-to", m::getReplyTo);
        bucket(addresses, "from", m::getFrom);
        doc.put("addresses", addresses);
        doc.put("original", original);
        Map<String, Object> dates = new LinkedHashMap<>();
        Date sent = m.getSentDate();
        if (sent != null) {
            dates.put("sent", Long.toString(sent.getTime()));
        }
        Date received = m.getReceivedDate();
        if (received != null) {
            dates.put("received", Long.toString(received.getTime()));
        }
        dates.put("written", written);
        doc.put("dates", dates);
        String[] ids = m.getHeader("Message-ID");
        if (ids != null && ids.length > 0) {
            doc.put("uidl", ids[0]);
        }
        doc.put("content", part(m));
        return doc;
    }

    private static void bucket(Map<String, Object> addresses, String key, AddressSource source) {
        try {
            Address[] found = source.get();
            if (found == null) {
                return;
            }
            List<Object> list = new ArrayList<>();
            for (Address a : found) {
                Map<String, Object> entry = new LinkedHashMap<>();
                if (a instanceof InternetAddress) {
                    InternetAddress ia = (InternetAddress) a;
                    if (ia.getPersonal() != null) {
                        entry.put("name", b64(MimeUtility.decodeText(ia.getPersonal())));
                    }
                    if (ia.getAddress() != null) {
                        entry.put("email", b64(MimeUtility.decodeText(ia.getAddress())));
                    }
                } else {
                    entry.put("email", b64(a.toString()));
                }
                list.add(entry);
            }
            addresses.put(key, list);
        } catch (Exception e) {
            // Each bucket is independent: a failing header leaves its bucket out.
        }
    }

    private static Map<String, Object> part(Part p) throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        List<Object> headers = new ArrayList<>();
        Enumeration<?> all = p.getAllHeaders();
        while (all.hasMoreElements()) {
            Header h = (Header) all.nextElement();
            headers.add(pair(MimeUtility.decodeText(h.getName()), b64(MimeUtility.decodeText(h.getValue()))));
        }
        out.put("headers", headers);
        Object content = p.getContent();
        if (content instanceof String) {
            out.put("class", "string");
            out.put("value", content);
        } else if (content instanceof Multipart) {
            Multipart mp = (Multipart) content;
            List<Object> children = new ArrayList<>();
            for (int i = 0; i < mp.getCount(); i++) {
                children.add(part(mp.getBodyPart(i)));
            }
            out.put("class", "part");
            out.put("value", children);
        } else if (content instanceof InputStream) {
            InputStream in = (InputStream) content;
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[8192];
            int n;
            while ((n = in.read(chunk)) > 0) {
                buf.write(chunk, 0, n);
            }
            out.put("class", "bytes");
            out.put("value", Base64.getEncoder().encodeToString(buf.toByteArray()));
        } else {
            out.put("class", "unknown");
        }
        return out;
    }

    // --- a tiny JSON writer --------------------------------------------------------------------

    private static void write(StringBuilder sb, Object v) {
        if (v instanceof String) {
            writeString(sb, (String) v);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                writeString(sb, (String) e.getKey());
                sb.append(':');
                write(sb, e.getValue());
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object o : (List<?>) v) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                write(sb, o);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("unsupported JSON value");
        }
    }

    private static void writeString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        sb.append('"');
    }
}
