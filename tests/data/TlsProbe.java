// A Java TLS client for the truststore tests: for each port given, one TLS
// handshake with 127.0.0.1, trusting what the JVM's default SSLContext
// trusts, i.e. -Djavax.net.ssl.trustStore (and its password and type).
// It checks the chain only, like the DDS connection examples (they turn
// hostname checking off). Prints "<port> ok <protocol>" or
// "<port> failed <exception>" per port; exits 0 only if every handshake
// completed.
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;

public class TlsProbe {
    public static void main(String[] args) {
        int failures = 0;
        for (String arg : args) {
            int port = Integer.parseInt(arg);
            try (SSLSocket s = (SSLSocket) SSLSocketFactory.getDefault().createSocket("127.0.0.1", port)) {
                s.setSoTimeout(20000);
                s.startHandshake();
                System.out.println(port + " ok " + s.getSession().getProtocol());
            } catch (Exception e) {
                System.out.println(port + " failed " + e.toString().replace('\n', ' '));
                failures++;
            }
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
